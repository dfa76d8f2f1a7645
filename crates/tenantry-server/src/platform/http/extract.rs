//! Extractors: the request context, the authenticated operator, and JSON / query parsing whose
//! every failure is a Problem.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::de::DeserializeOwned;
use tenantry_domain::api_key::KeyKind;
use tenantry_domain::resolution::{self, Source};
use tenantry_domain::{FieldError, Principal, Scope, TenantId, TraceContext};

use crate::access::AuthError;
use crate::access::scope::{TenantAccess, require_scope};
use crate::platform::http::AppState;
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::{Ctx, PlatformOrTenant};

/// Per-request facts set by the edge middleware.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub trace: TraceContext,
    pub request_id: String,
    /// The tenant the request turned out to be about, filled in by the use case.
    pub tenant: Arc<Mutex<Option<TenantId>>>,
}

impl RequestContext {
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant.lock().ok().and_then(|t| *t)
    }
}

fn request_context(parts: &Parts) -> RequestContext {
    parts
        .extensions
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| RequestContext {
            trace: crate::platform::new_trace(),
            request_id: String::new(),
            tenant: Arc::default(),
        })
}

/// The one value of a header that must not be repeated (a second `Authorization` or
/// `X-Tenant-Id` could make the request mean something else to a proxy than to us).
fn single_header<'a>(
    parts: &'a Parts,
    name: &axum::http::HeaderName,
    what: &str,
) -> Result<Option<&'a axum::http::HeaderValue>, Problem> {
    let mut values = parts.headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Problem::new(
            Kind::InvalidHeader,
            format!("send one {what} header, not several"),
        ));
    }
    Ok(first)
}

fn bearer(parts: &Parts) -> Result<Option<String>, Problem> {
    let Some(v) = single_header(parts, &header::AUTHORIZATION, "Authorization")? else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| AuthError::Invalid)?;
    let (scheme, token) = v.split_once(' ').ok_or(AuthError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid.into());
    }
    Ok(Some(token.trim().to_owned()))
}

/// Any authenticated caller (operator, tenant or device key) and the context its use cases run in.
pub struct Caller {
    pub principal: Principal,
    pub ctx: Ctx,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<CallerCache>() {
            return Ok(Caller {
                principal: caller.0.clone(),
                ctx: caller.1.clone(),
            });
        }
        let rc = request_context(parts);
        let token = bearer(parts)?.ok_or(AuthError::Missing)?;
        let principal = if token.starts_with("tnt_") {
            state.app.authenticate_key(&token).await?
        } else {
            state.tokens.verify(&token).await?
        };
        if let Some(t) = principal.tenant {
            crate::observability::traces::note_tenant(t);
        }
        let ctx = Ctx::with_tenant_slot(principal.actor(), Some(rc.trace), rc.tenant.clone());
        parts
            .extensions
            .insert(CallerCache(principal.clone(), ctx.clone()));
        Ok(Caller { principal, ctx })
    }
}

/// A caller authenticated earlier in the same request (middleware and handler share it).
#[derive(Clone)]
struct CallerCache(Principal, Ctx);

/// An authenticated operator.
pub struct Operator {
    pub principal: Principal,
    pub ctx: Ctx,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller { principal, ctx } = Caller::from_request_parts(parts, state).await?;
        if !principal.is_operator() {
            return Err(match principal.credential {
                tenantry_domain::CredentialKind::DeviceKey => {
                    AuthError::NotOperator(KeyKind::Device)
                }
                tenantry_domain::CredentialKind::Jwt => AuthError::NotOperatorToken,
                _ => AuthError::NotOperator(KeyKind::TenantSecret),
            }
            .into());
        }
        Ok(Operator { principal, ctx })
    }
}

/// The scope a route needs, as a type: `TenantCtx<need::DevicesManage>`.
pub trait Need: Send + Sync + 'static {
    const SCOPE: Scope;
}

pub mod need {
    use tenantry_domain::Scope;

    macro_rules! needs {
        ($($name:ident),+) => {
            $(
                pub struct $name;
                impl super::Need for $name {
                    const SCOPE: Scope = Scope::$name;
                }
            )+
        };
    }
    // every scope of the catalog (tenantry_domain::Scope)
    needs!(
        TenantsRead,
        TenantsManage,
        EditionsRead,
        EditionsManage,
        KeysRead,
        KeysManage,
        DevicesRead,
        DevicesManage,
        TelemetryRead,
        TelemetryWrite,
        SourcesRead,
        SourcesManage,
        JobsRead,
        JobsManage,
        AuditRead,
        EventsRead,
        WebhooksRead,
        WebhooksManage,
        UsageRead,
        BillingManage
    );
}

/// The caller as [`PlatformOrTenant`]: an operator naming no tenant acts for the platform (the
/// route's scope checked on the credential); anyone else, or an operator naming a tenant, acts on
/// one resolved tenant exactly as [`TenantCtx`] does.
pub struct PlatformOrTenantCtx<N: Need> {
    pub ctx: Ctx,
    /// The resolved tenant (`None`: the platform).
    pub tenant: Option<TenantCtx<N>>,
    pub principal: tenantry_domain::Principal,
}

impl<N: Need> PlatformOrTenantCtx<N> {
    pub fn access(&self) -> PlatformOrTenant<'_> {
        match &self.tenant {
            Some(t) => PlatformOrTenant::Tenant(t.scope()),
            None => PlatformOrTenant::Platform,
        }
    }
}

fn names_a_tenant(parts: &Parts, state: &AppState) -> bool {
    parts.headers.contains_key("x-tenant-id")
        || parts.extensions.get::<PathTenant>().is_some()
        || state.tenant_base_host.as_deref().is_some_and(|base| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| tenantry_domain::resolution::subdomain(h, base))
                .is_some()
        })
}

impl<N: Need> FromRequestParts<AppState> for PlatformOrTenantCtx<N> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller { principal, ctx } = Caller::from_request_parts(parts, state).await?;
        if principal.is_operator() && !names_a_tenant(parts, state) {
            require_scope(&principal, N::SCOPE)?;
            return Ok(Self {
                ctx,
                tenant: None,
                principal,
            });
        }
        let t = TenantCtx::<N>::from_request_parts(parts, state).await?;
        Ok(Self {
            ctx: t.ctx.clone(),
            principal: t.principal.clone(),
            tenant: Some(t),
        })
    }
}

/// `/t/{tenant}/…`: the tenant named by the path prefix (set by [`strip_tenant_prefix`]).
#[derive(Clone, Debug)]
pub struct PathTenant(pub String);

/// A caller allowed on one resolved tenant: the route's scope is checked first (so that an
/// under-scoped credential learns nothing about tenants), then the tenant is resolved from the
/// `X-Tenant-Id` header, the subdomain, the `/t/{tenant}` prefix or a `{tenant}` path segment, and
/// the credential; writes to a suspended tenant are refused.
pub struct TenantCtx<N: Need> {
    pub principal: Principal,
    pub ctx: Ctx,
    pub access: TenantAccess,
    _need: std::marker::PhantomData<N>,
}

impl<N: Need> TenantCtx<N> {
    pub fn scope(&self) -> &tenantry_domain::TenantScope {
        &self.access.scope
    }
}

impl<N: Need> FromRequestParts<AppState> for TenantCtx<N> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller { principal, ctx } = Caller::from_request_parts(parts, state).await?;
        require_scope(&principal, N::SCOPE)?;
        let mut explicit = Vec::new();
        if parts.headers.get_all("x-tenant-id").iter().nth(1).is_some() {
            return Err(Problem::new(
                Kind::TenantAmbiguous,
                "send one X-Tenant-Id header: several name the tenant ambiguously",
            ));
        }
        if let Some(v) = parts.headers.get("x-tenant-id") {
            let v = v.to_str().map_err(|_| {
                Problem::new(Kind::InvalidHeader, "X-Tenant-Id must be visible ASCII")
            })?;
            explicit.push((Source::Header, v.trim().to_owned()));
        }
        if let Some(base) = state.tenant_base_host.as_deref()
            && let Some(host) = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
            && let Some(label) = resolution::subdomain(host, base)
        {
            explicit.push((Source::Subdomain, label.to_owned()));
        }
        if let Some(PathTenant(t)) = parts.extensions.get::<PathTenant>() {
            explicit.push((Source::Path, t.clone()));
        }
        if let Ok(params) = RawPathParams::from_request_parts(parts, state).await
            && let Some((_, t)) = params.iter().find(|(k, _)| *k == "tenant")
        {
            explicit.push((Source::Path, t.to_owned()));
        }
        let access = state
            .app
            .resolve_tenant(&ctx, &principal, &explicit)
            .await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            access.require_writable(&principal)?;
        }
        Ok(TenantCtx {
            principal,
            ctx,
            access,
            _need: std::marker::PhantomData,
        })
    }
}

/// Refuses a percent-encoded NUL (`%00`) in the path (`400 bad_request`) or the query (`400
/// invalid_query`): no identifier or filter may contain U+0000, on any backend.
pub async fn refuse_nul_in_uri(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if has_nul(req.uri().path()) {
        return Problem::new(
            Kind::BadRequest,
            "the path must not contain a NUL character (%00)",
        )
        .into_response();
    }
    if let Some(q) = req.uri().query()
        && has_nul(q)
    {
        // a cursor with a NUL is one this server did not issue
        let in_cursor = q
            .split('&')
            .filter_map(|p| p.split_once('='))
            .any(|(k, v)| k == "cursor" && has_nul(v));
        let (kind, what) = if in_cursor {
            (Kind::InvalidCursor, "the cursor")
        } else {
            (Kind::InvalidQuery, "query parameters")
        };
        return Problem::new(
            kind,
            format!("{what} must not contain a NUL character (%00)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Rewrites `/t/{tenant}/rest` to `/rest`, remembering the tenant (runs before routing).
pub async fn strip_tenant_prefix(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/t/")
        && let Some((tenant, tail)) = rest.split_once('/')
        && !tenant.is_empty()
    {
        let tenant = tenant.to_owned();
        let new_path = format!("/{tail}");
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
                req.extensions_mut().insert(PathTenant(tenant));
            }
        }
    }
    next.run(req).await
}

/// A JSON body: `application/json` or any `application/*+json` (such as merge-patch). Keeps the
/// parsed document too, for idempotency hashing.
pub struct ApiJson<T> {
    pub value: T,
    pub document: serde_json::Value,
}

fn is_json_content_type(req: &Request) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(&req) {
            return Err(Problem::new(
                Kind::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        parse_json(&read_body(req, state).await?)
    }
}

/// The whole body, with the same answers as every JSON route for one too large (`413`) or too
/// slow (`408`).
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(ref inner)
            if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Problem::new(
                Kind::PayloadTooLarge,
                "the request body is larger than the server accepts",
            )
        }
        other if body_timed_out(&other) => Problem::new(
            Kind::RequestTimeout,
            "the request body stopped arriving (nothing for `http.body_timeout_ms`)",
        ),
        other => Problem::new(
            Kind::BadRequest,
            format!("cannot read the request body: {other}"),
        ),
    })
}

/// A body of JSON (`application/json`) or of JSON lines (`application/x-ndjson`, one document per
/// line, each parsed by its reader so that one bad line does not refuse the others).
pub enum JsonOrLines {
    Json(ApiJson<serde_json::Value>),
    Lines(String),
}

impl<S: Send + Sync> FromRequest<S> for JsonOrLines {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ndjson = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-ndjson"));
        if !ndjson {
            if !is_json_content_type(&req) {
                return Err(Problem::new(
                    Kind::UnsupportedMediaType,
                    "send the body as JSON (application/json) or as JSON lines (application/x-ndjson)",
                ));
            }
            return Ok(Self::Json(parse_json(&read_body(req, state).await?)?));
        }
        let bytes = read_body(req, state).await?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Problem::new(Kind::MalformedJson, "the body is not UTF-8 text"))?;
        Ok(Self::Lines(text))
    }
}

/// The first string of `doc` (a value or a key) that holds U+0000, by its path: the platform's
/// one text policy, for documents parsed outside [`parse_json`] (JSON lines).
pub fn nul_field(doc: &serde_json::Value) -> Option<String> {
    nul_in(doc, String::new())
}

/// Whether reading a body failed because it stopped arriving (the server loop's body timeout).
fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A JSON body whose every field is optional: an empty body (no bytes, no `Content-Type`) is
/// the default value; anything else is read as [`ApiJson`].
pub struct ApiJsonOrEmpty<T>(pub ApiJson<T>);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let untyped = !req.headers().contains_key(header::CONTENT_TYPE);
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        if untyped
            && (declared_empty || !(chunked || req.headers().contains_key(header::CONTENT_LENGTH)))
        {
            return Ok(Self(ApiJson {
                value: T::default(),
                document: serde_json::json!({}),
            }));
        }
        ApiJson::from_request(req, state).await.map(Self)
    }
}

/// Parses a JSON body: syntax errors are `400 malformed_json`, shape errors `422` with the path.
/// No string of a body — a value or a key, in typed fields or in opaque payloads alike — may hold
/// U+0000 (PostgreSQL cannot store it, and SQLite would): `422` naming the field, on every
/// backend.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<ApiJson<T>, Problem> {
    let document: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            Kind::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if let Some(field) = nul_in(&document, String::new()) {
        let message = "must not contain the NUL character (U+0000)".to_owned();
        return Err(
            Problem::new(Kind::ValidationFailed, format!("{field}: {message}"))
                .with_errors(vec![FieldError { field, message }]),
        );
    }
    let value = serde_path_to_error::deserialize::<_, T>(&document).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            String::from("(body)")
        } else {
            path
        };
        let message = for_people(&e.into_inner().to_string());
        Problem::new(
            Kind::ValidationFailed,
            format!("the body does not match the expected shape: {field}: {message}"),
        )
        .with_errors(vec![FieldError { field, message }])
    })?;
    Ok(ApiJson { value, document })
}

/// A deserializer's message in the API's words: JSON types instead of Rust ones (`expected u64`
/// → `expected a whole number from 0`, `expected struct TenantPatchIn` → `expected an object`).
pub fn for_people(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number from 0"),
        ("u128", "a whole number from 0"),
        ("usize", "a whole number from 0"),
        ("i8", "a whole number from -128 to 127"),
        ("i16", "a whole number from -32768 to 32767"),
        ("i32", "a whole number from -2147483648 to 2147483647"),
        ("i64", "a whole number"),
        ("i128", "a whole number"),
        ("isize", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
        ("a sequence", "an array"),
        ("a map", "an object"),
        ("a borrowed string", "a string"),
        ("unit", "null"),
        ("a boolean", "true or false"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected ") {
        out.push_str(&rest[..at + "expected ".len()]);
        rest = &rest[at + "expected ".len()..];
        // `struct Name`, `enum Name`, `tuple struct Name`…: the Rust type of an object or value
        let kinds = ["tuple struct ", "newtype struct ", "struct ", "enum "];
        if let Some(kind) = kinds.iter().find(|k| rest.starts_with(*k)) {
            let name = &rest[kind.len()..];
            let end = name
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            out.push_str(if kind.starts_with("enum") {
                "one of the documented values"
            } else {
                "an object"
            });
            rest = &name[end..];
            continue;
        }
        if let Some((word, plain)) = WORDS.iter().find(|(w, _)| {
            rest.starts_with(w)
                && !rest[w.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        }) {
            out.push_str(plain);
            rest = &rest[word.len()..];
        }
    }
    out.push_str(rest);
    out.replace("invalid type: integer `", "invalid type: number `")
        .replace("invalid value: integer `", "invalid value: number `")
        .replace("floating point `", "number `")
        .replace("invalid type: map", "invalid type: object")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("unit value", "null")
}

/// The path (`a.b[0].c`) of the first string or key in `v` that contains U+0000.
fn nul_in(v: &serde_json::Value, at: String) -> Option<String> {
    let field = |at: &str| {
        if at.is_empty() {
            "(body)".to_owned()
        } else {
            at.to_owned()
        }
    };
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Some(field(&at)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_in(item, path)
            }
        }),
        _ => None,
    }
}

/// Whether a request carries a body (a non-zero `Content-Length`, or `Transfer-Encoding`).
pub fn has_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// An operation that takes no body: one sent anyway is a `400 bad_request` (it would be ignored
/// silently, and the client may think it mattered).
pub struct NoBody;

impl<S: Send + Sync> FromRequestParts<S> for NoBody {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if has_body(&parts.headers) {
            return Err(Problem::new(
                Kind::BadRequest,
                format!(
                    "{} {} takes no body; send none",
                    parts.method,
                    parts.uri.path()
                ),
            ));
        }
        Ok(NoBody)
    }
}

/// The `If-Match` header: absent, or its value. A value that is not visible ASCII (no entity tag
/// can be) is a `400 invalid_header`, not taken for a missing header.
pub fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<&str>, Problem> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            Problem::new(
                Kind::InvalidHeader,
                "If-Match must be an entity tag as the ETag header gave it (such as \"3\"): visible ASCII characters only",
            )
        }),
    }
}

/// No query parameters at all (a list that is not paginated): any is a `400 invalid_query`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Query parameters; unknown or ill-typed ones are a `400 invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| {
                let detail = match &e {
                    QueryRejection::FailedToDeserializeQueryString(inner) => inner.body_text(),
                    other => other.body_text(),
                };
                Problem::new(Kind::InvalidQuery, for_people(&detail))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::for_people;

    #[test]
    fn rust_type_names_become_json_words() {
        for (raw, want) in [
            (
                "invalid type: string \"x\", expected u64",
                "invalid type: string \"x\", expected a whole number from 0",
            ),
            (
                "invalid type: integer `5`, expected struct TenantPatchIn",
                "invalid type: number `5`, expected an object",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "invalid value: number `-1`, expected a whole number from 0 to 4294967295",
            ),
            (
                "invalid type: map, expected a sequence",
                "invalid type: object, expected an array",
            ),
            (
                "unknown variant `x`, expected one of `a`, `b`",
                "unknown variant `x`, expected one of `a`, `b`",
            ),
            (
                "invalid type: unit value, expected enum Kind",
                "invalid type: null, expected one of the documented values",
            ),
            ("missing field `name`", "missing field `name`"),
        ] {
            assert_eq!(for_people(raw), want);
        }
    }
}
