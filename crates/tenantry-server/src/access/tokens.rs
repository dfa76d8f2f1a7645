//! Bearer tokens (JWT): HS256 with a configured secret, and RS256 / ES256 / EdDSA with keys from the
//! identity provider's JWKS document. Keys are cached; an unknown `kid` triggers a refresh, at most
//! one every `jwks_min_refresh` (default 30 s) so that forged `kid`s cannot turn us into a traffic amplifier.
//!
//! Signatures and registered claims are checked by `jsonwebtoken`; what the claims grant is decided
//! by [`tenantry_domain::token::TokenClaims::principal`].

use opentelemetry::context::FutureExt as _;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tenantry_domain::Principal;
use tenantry_domain::token::TokenClaims;
use tokio::sync::{Mutex, RwLock};

use crate::access::AuthError;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 120;
/// Cached JWKS keys are refreshed (on the next token) after this long, to pick up removals.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How tokens are verified.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub hs256_secret: Option<String>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The least time between two JWKS downloads.
    pub jwks_min_refresh: Duration,
}

/// Verifies bearer tokens. Without any configured method every token is rejected.
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| &j.url))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<KeyCache>,
    /// Held while downloading; remembers when the last download was attempted.
    refreshing: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

#[derive(Default)]
struct KeyCache {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings) -> anyhow::Result<Self> {
        let jwks = match settings.jwks_url {
            Some(url) => Some(Jwks {
                url,
                client: crate::http_client().timeout(FETCH_TIMEOUT).build()?,
                keys: RwLock::default(),
                refreshing: Mutex::default(),
                min_refresh: settings.jwks_min_refresh,
            }),
            None => None,
        };
        Ok(Self {
            hs256: settings
                .hs256_secret
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks,
            issuer: settings.issuer,
            audience: settings.audience,
        })
    }

    /// Whether any token can be accepted.
    pub fn enabled(&self) -> bool {
        self.hs256.is_some() || self.jwks.is_some()
    }

    /// Downloads the JWKS once (at start-up), so the first request does not wait for it.
    pub async fn warm_up(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.refresh(true).await;
        }
    }

    /// Checks a token and returns the principal it stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the bearer credential is neither an API key nor a JWT"))?;
        let key = match header.alg {
            Algorithm::HS256 => self
                .hs256
                .clone()
                .ok_or_else(|| invalid("HS256 tokens are not accepted by this server"))?,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA => {
                let jwks = self.jwks.as_ref().ok_or_else(|| {
                    invalid("tokens signed with public keys are not accepted (no JWKS configured)")
                })?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("the token header has no 'kid'"))?;
                jwks.key(kid)
                    .await
                    .ok_or_else(|| invalid("the token's signing key ('kid') is not known"))?
            }
            other => return Err(invalid(&format!("algorithm {other:?} is not accepted"))),
        };
        if key.family() != header.alg.family() {
            return Err(invalid(
                "the token's algorithm does not match its key ('kid')",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation).map_err(|e| {
            invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                ErrorKind::InvalidAudience => "the token is not for this audience",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => {
                    "the token lacks a required claim (exp, sub, iss, aud)"
                }
                ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key",
                _ => "the token is malformed",
            })
        })?;
        data.claims
            .principal()
            .map_err(|e| AuthError::InvalidToken(e.to_string()))
    }
}

fn invalid(why: &str) -> AuthError {
    AuthError::InvalidToken(why.to_owned())
}

impl Jwks {
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        {
            let cache = self.keys.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < MAX_KEY_AGE);
            if let Some(key) = cache.by_kid.get(kid)
                && fresh
            {
                return Some(key.clone());
            }
        }
        self.refresh(false).await;
        self.keys.read().await.by_kid.get(kid).cloned()
    }

    /// Downloads the key set, unless another download happened less than `min_refresh` ago.
    /// A failed download keeps the keys already known.
    async fn refresh(&self, force: bool) {
        let mut last = self.refreshing.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        metrics::counter!("jwks_refresh_total").increment(1);
        match self.fetch().await {
            Ok(by_kid) => {
                tracing::info!(keys = by_kid.len(), url = %self.url, "JWKS loaded");
                *self.keys.write().await = KeyCache {
                    by_kid,
                    fetched_at: Some(Instant::now()),
                };
            }
            Err(e) => {
                metrics::counter!("jwks_refresh_failures_total").increment(1);
                tracing::warn!(error = %e, url = %self.url, "could not load the JWKS; keeping the keys already known");
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let call = crate::observability::traces::client_span("GET", &self.url);
        let set: anyhow::Result<JwkSet> = async {
            let mut headers = reqwest::header::HeaderMap::new();
            crate::observability::traces::inject_current(&mut headers);
            let resp = self.client.get(&self.url).headers(headers).send().await?;
            crate::observability::traces::record_status(resp.status().as_u16());
            anyhow::Ok(resp.error_for_status()?.json().await?)
        }
        .with_context(call.cx.clone())
        .await;
        crate::observability::traces::end(&call.cx, set.is_ok());
        let set = set?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) if key.family() != jsonwebtoken::AlgorithmFamily::Hmac => {
                    keys.insert(kid, key);
                }
                Ok(_) => tracing::warn!(%kid, "ignoring a symmetric key in the JWKS"),
                Err(e) => {
                    tracing::warn!(%kid, error = %e, "ignoring a JWKS key tenantry cannot use")
                }
            }
        }
        Ok(keys)
    }
}
