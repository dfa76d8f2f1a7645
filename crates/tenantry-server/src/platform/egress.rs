//! The egress guard: the one HTTP client for requests to addresses that tenants choose (source
//! sync, webhooks). It refuses internal addresses (`tenantry_domain::egress`) on every address a
//! name resolves to — a name with any refused address is refused whole, so DNS rebinding to an
//! internal address fails — and connects only to the addresses it vetted (its own resolver, so
//! nothing resolves the name a second time). IP-literal URLs are vetted before the request.
//! Redirects are not followed: a caller that follows one sends it through `send` again, which
//! vets the new target. No proxy from the environment is used.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenantry_domain::egress::{EgressPolicy, Refusal};

use crate::config::{ConfigError, invalid};

/// `[egress]`: what outbound requests to tenant-chosen URLs may reach.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Allow every address, internal ones included (development and tests only).
    pub allow_private: bool,
    /// Networks allowed although they are not global, comma-separated CIDRs
    /// (`10.20.0.0/16, fd00:1::/64`): an internal gateway.
    pub allow: String,
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("egress_allow_private", "egress.allow_private"),
    ("egress_allow", "egress.allow"),
];

impl EgressConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        EgressPolicy::parse_allow(&self.allow).map_err(|e| invalid("egress.allow", e))?;
        Ok(())
    }

    pub fn policy(&self) -> EgressPolicy {
        EgressPolicy {
            allow_private: self.allow_private,
            allow: EgressPolicy::parse_allow(&self.allow).unwrap_or_default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("{url}: only http and https URLs may be requested")]
    Scheme { url: String },
    #[error("{url}: the URL has no host")]
    NoHost { url: String },
    #[error(
        "{host} is refused: {address} is a {kind} address (internal addresses are not reachable; see [egress] in the configuration)"
    )]
    Refused {
        host: String,
        address: std::net::IpAddr,
        kind: &'static str,
    },
    #[error("{0}")]
    Request(#[from] reqwest::Error),
}

impl EgressError {
    /// The refusal, when the guard refused the address (possibly inside the HTTP client's error).
    pub fn refusal(&self) -> Option<(&str, std::net::IpAddr, &'static str)> {
        match self {
            EgressError::Refused {
                host,
                address,
                kind,
            } => Some((host, *address, kind)),
            EgressError::Request(e) => {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
                while let Some(s) = source {
                    if let Some(EgressError::Refused {
                        host,
                        address,
                        kind,
                    }) = s.downcast_ref::<EgressError>()
                    {
                        return Some((host, *address, kind));
                    }
                    source = s.source();
                }
                None
            }
            _ => None,
        }
    }
}

fn refused(host: &str, address: std::net::IpAddr, why: Refusal) -> EgressError {
    EgressError::Refused {
        host: host.to_owned(),
        address,
        kind: why.as_str(),
    }
}

/// Resolves with the system resolver, then keeps the name only if every address passes.
struct VettingResolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                if let Err(why) = policy.vet(a.ip()) {
                    return Err(Box::new(refused(&host, a.ip(), why))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guarded client.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl Egress {
    pub fn new(policy: EgressPolicy, timeout: Duration) -> Result<Self, EgressError> {
        let policy = Arc::new(policy);
        let client = crate::http_client()
            .dns_resolver(Arc::new(VettingResolver {
                policy: Arc::clone(&policy),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()?;
        Ok(Self { client, policy })
    }

    /// A request builder on the guarded client (send it with [`Egress::send`]).
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Checks a URL as the guard would: its scheme, and its host when it is an address.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Scheme {
                url: url.to_string(),
            });
        }
        let Some(host) = url.host_str() else {
            return Err(EgressError::NoHost {
                url: url.to_string(),
            });
        };
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(address) = literal.parse::<std::net::IpAddr>() else {
            return Ok(()); // a name: vetted when it is resolved
        };
        self.policy
            .vet(address)
            .map_err(|why| refused(&address.to_string(), address, why))
    }

    /// Sends a request built by [`Egress::request`], after vetting its URL.
    pub async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, EgressError> {
        self.check_url(request.url())?;
        let response = self.client.execute(request).await.map_err(|e| {
            let e = EgressError::Request(e);
            match e.refusal() {
                Some((host, address, kind)) => EgressError::Refused {
                    host: host.to_owned(),
                    address,
                    kind,
                },
                None => e,
            }
        })?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback HTTP server: `/` answers 200, `/hop` redirects to `/`.
    async fn local() -> u16 {
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/hop",
                axum::routing::get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, "/")],
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    async fn get(e: &Egress, url: &str) -> Result<reqwest::Response, EgressError> {
        e.send(e.request(reqwest::Method::GET, url).build().unwrap())
            .await
    }

    #[tokio::test]
    async fn internal_targets_are_refused_however_they_are_named() {
        let port = local().await;
        let guarded = Egress::new(EgressPolicy::default(), Duration::from_secs(5)).unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://[::1]:{port}/"),
            format!("http://2130706433:{port}/"), // 127.0.0.1 as one number
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ] {
            let err = get(&guarded, &url).await.unwrap_err();
            let (_, _, kind) = err.refusal().unwrap_or_else(|| panic!("{url}: {err}"));
            assert!(["loopback", "link-local"].contains(&kind), "{url}: {err}");
            assert!(err.to_string().contains("is refused"), "{err}");
        }
        assert!(matches!(
            guarded.check_url(&"ftp://files.example/x".parse().unwrap()),
            Err(EgressError::Scheme { .. })
        ));
    }

    #[tokio::test]
    async fn allowances_let_named_networks_through_and_redirects_are_not_followed() {
        let port = local().await;
        let open = Egress::new(
            EgressPolicy {
                allow_private: true,
                allow: Vec::new(),
            },
            Duration::from_secs(5),
        )
        .unwrap();
        let ok = get(&open, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let gateway = Egress::new(
            EgressPolicy {
                allow_private: false,
                allow: EgressPolicy::parse_allow("127.0.0.0/8").unwrap(),
            },
            Duration::from_secs(5),
        )
        .unwrap();
        let hop = get(&gateway, &format!("http://127.0.0.1:{port}/hop"))
            .await
            .unwrap();
        assert_eq!(
            hop.status(),
            302,
            "the caller decides, and vets the next hop"
        );
        assert_eq!(hop.headers()["location"], "/");
    }
}
