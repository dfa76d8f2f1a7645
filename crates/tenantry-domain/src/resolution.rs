//! Which tenant a request is for. Sources, in precedence order: the `X-Tenant-Id` header, the
//! subdomain of the configured base host, the `/t/{tenant}/` path prefix, and the credential's own
//! tenant. Explicit sources that name different tenants make the request ambiguous; a tenant-bound
//! credential may only act on its own tenant; operators must name the tenant.

use std::fmt;

use crate::id::TenantId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Header,
    Subdomain,
    Path,
    Credential,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Header => "the X-Tenant-Id header",
            Source::Subdomain => "the subdomain",
            Source::Path => "the /t/{tenant} path prefix",
            Source::Credential => "the credential",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolutionError {
    #[error("{first} and {second} name different tenants")]
    Ambiguous { first: Source, second: Source },
    #[error(
        "no tenant named: send X-Tenant-Id, use the tenant's subdomain or a /t/{{tenant}}/ path"
    )]
    Missing,
    #[error("this credential belongs to another tenant")]
    WrongTenant,
}

/// Decides the tenant from the explicit sources (already looked up to ids, in any order) and the
/// credential's tenant (`None` for platform credentials such as operator keys).
pub fn decide(
    explicit: &[(Source, TenantId)],
    credential: Option<TenantId>,
) -> Result<(TenantId, Source), ResolutionError> {
    let mut sorted = explicit.to_vec();
    sorted.sort_by_key(|(s, _)| *s);
    if let Some(&(first_source, first)) = sorted.first() {
        if let Some(&(second, _)) = sorted.iter().find(|(_, id)| *id != first) {
            return Err(ResolutionError::Ambiguous {
                first: first_source,
                second,
            });
        }
        return match credential {
            Some(own) if own != first => Err(ResolutionError::WrongTenant),
            _ => Ok((first, first_source)),
        };
    }
    credential
        .map(|id| (id, Source::Credential))
        .ok_or(ResolutionError::Missing)
}

/// The tenant label of `host` under `base` (`acme.api.example.com` under `api.example.com` is
/// `acme`); `None` for the base itself or another host. The port is ignored.
pub fn subdomain<'a>(host: &'a str, base: &str) -> Option<&'a str> {
    let host = host.split(':').next().unwrap_or(host);
    let base = base.split(':').next().unwrap_or(base);
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_agreement() {
        let (a, b) = (TenantId::new(), TenantId::new());
        assert_eq!(
            decide(&[(Source::Path, a), (Source::Header, a)], None),
            Ok((a, Source::Header))
        );
        assert_eq!(
            decide(&[(Source::Path, b), (Source::Header, a)], None),
            Err(ResolutionError::Ambiguous {
                first: Source::Header,
                second: Source::Path
            })
        );
        assert_eq!(decide(&[], Some(a)), Ok((a, Source::Credential)));
        assert_eq!(
            decide(&[(Source::Header, a)], Some(a)),
            Ok((a, Source::Header))
        );
        assert_eq!(
            decide(&[(Source::Header, b)], Some(a)),
            Err(ResolutionError::WrongTenant)
        );
        assert_eq!(decide(&[], None), Err(ResolutionError::Missing));
    }

    #[test]
    fn subdomains() {
        assert_eq!(
            subdomain("acme.api.example.com", "api.example.com"),
            Some("acme")
        );
        assert_eq!(
            subdomain("acme.api.example.com:8443", "api.example.com"),
            Some("acme")
        );
        assert_eq!(subdomain("api.example.com", "api.example.com"), None);
        assert_eq!(subdomain("x.acme.api.example.com", "api.example.com"), None);
        assert_eq!(subdomain("evilapi.example.com", "api.example.com"), None);
        assert_eq!(subdomain("acme.other.com", "api.example.com"), None);
    }
}
