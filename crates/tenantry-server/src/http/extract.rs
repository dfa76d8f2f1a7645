//! Extractors: the request context, the authenticated operator, and JSON / query parsing whose
//! every failure is a Problem.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tenantry_domain::{FieldError, TenantId, TraceContext};

use super::AppState;
use super::problem::{Kind, Problem};
use crate::app::{Ctx, Principal};

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
            trace: crate::app::new_trace(),
            request_id: String::new(),
            tenant: Arc::default(),
        })
}

/// An authenticated operator and the context its use cases run in.
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
        let rc = request_context(parts);
        let bearer = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v.to_str().map_err(|_| crate::app::AuthError::Invalid)?;
                let (scheme, token) = v.split_once(' ').ok_or(crate::app::AuthError::Invalid)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(crate::app::AuthError::Invalid.into());
                }
                Some(token.trim().to_owned())
            }
        };
        let principal = state.app.authenticate_operator(bearer.as_deref()).await?;
        let ctx = Ctx::with_tenant_slot(
            principal.actor(),
            Some(rc.trace.trace_id_hex()),
            rc.tenant.clone(),
        );
        Ok(Operator { principal, ctx })
    }
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
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(ref inner)
                if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Problem::new(
                    Kind::PayloadTooLarge,
                    "the request body is larger than the server accepts",
                )
            }
            other => Problem::new(
                Kind::BadRequest,
                format!("cannot read the request body: {other}"),
            ),
        })?;
        let document: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::new(
                Kind::MalformedJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let value = serde_path_to_error::deserialize::<_, T>(&document).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                String::from("(body)")
            } else {
                path
            };
            let message = e.into_inner().to_string();
            Problem::new(
                Kind::ValidationFailed,
                format!("the body does not match the expected shape: {field}: {message}"),
            )
            .with_errors(vec![FieldError { field, message }])
        })?;
        Ok(ApiJson { value, document })
    }
}

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
                Problem::new(Kind::InvalidQuery, detail)
            })
    }
}
