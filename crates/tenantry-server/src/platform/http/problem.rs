//! RFC 9457 problem details. Every error response of the API is one of these, with a stable
//! `type` (`urn:tenantry:problem:<code>`), documented in `docs/problems.md`. This module is the one
//! place where errors become HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tenantry_domain::{FieldError, TransitionError};
use tenantry_store::StoreError;

use crate::access::AuthError;
use crate::platform::AppError;

pub const CONTENT_TYPE: &str = "application/problem+json";
pub const TYPE_PREFIX: &str = "urn:tenantry:problem:";

macro_rules! problem_kinds {
    ($($variant:ident => ($code:literal, $status:expr, $title:literal)),+ $(,)?) => {
        /// Every kind of problem the API reports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Kind { $($variant),+ }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];
            pub const fn code(self) -> &'static str { match self { $(Kind::$variant => $code),+ } }
            pub const fn status(self) -> StatusCode { match self { $(Kind::$variant => $status),+ } }
            pub const fn title(self) -> &'static str { match self { $(Kind::$variant => $title),+ } }
        }
    };
}

problem_kinds! {
    BadRequest => ("bad_request", StatusCode::BAD_REQUEST, "Bad request"),
    MalformedJson => ("malformed_json", StatusCode::BAD_REQUEST, "Malformed JSON"),
    InvalidQuery => ("invalid_query", StatusCode::BAD_REQUEST, "Invalid query parameters"),
    InvalidCursor => ("invalid_cursor", StatusCode::BAD_REQUEST, "Invalid pagination cursor"),
    InvalidHeader => ("invalid_header", StatusCode::BAD_REQUEST, "Invalid header"),
    TenantAmbiguous => ("tenant_ambiguous", StatusCode::BAD_REQUEST, "Ambiguous tenant"),
    TenantRequired => ("tenant_required", StatusCode::BAD_REQUEST, "Tenant required"),
    Unauthorized => ("unauthorized", StatusCode::UNAUTHORIZED, "Authentication required"),
    Forbidden => ("forbidden", StatusCode::FORBIDDEN, "Forbidden"),
    OperatorRequired => ("operator_required", StatusCode::FORBIDDEN, "Operator credential required"),
    QuotaExceeded => ("quota_exceeded", StatusCode::FORBIDDEN, "Quota exceeded"),
    InsufficientScope => ("insufficient_scope", StatusCode::FORBIDDEN, "Insufficient scope"),
    TenantMismatch => ("tenant_mismatch", StatusCode::FORBIDDEN, "Credential not valid for this tenant"),
    TenantSuspended => ("tenant_suspended", StatusCode::FORBIDDEN, "Tenant suspended"),
    NotFound => ("not_found", StatusCode::NOT_FOUND, "Not found"),
    TenantNotFound => ("tenant_not_found", StatusCode::NOT_FOUND, "Tenant not found"),
    EditionNotFound => ("edition_not_found", StatusCode::NOT_FOUND, "Edition not found"),
    ApiKeyNotFound => ("api_key_not_found", StatusCode::NOT_FOUND, "API key not found"),
    DeviceNotFound => ("device_not_found", StatusCode::NOT_FOUND, "Device not found"),
    JobNotFound => ("job_not_found", StatusCode::NOT_FOUND, "Job not found"),
    ScheduleNotFound => ("schedule_not_found", StatusCode::NOT_FOUND, "Schedule not found"),
    SourceNotFound => ("source_not_found", StatusCode::NOT_FOUND, "Source not found"),
    WebhookSubscriptionNotFound => ("webhook_subscription_not_found", StatusCode::NOT_FOUND, "Webhook subscription not found"),
    MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    RequestTimeout => ("request_timeout", StatusCode::REQUEST_TIMEOUT, "Request timeout"),
    SlugTaken => ("slug_taken", StatusCode::CONFLICT, "Slug already taken"),
    EditionExists => ("edition_exists", StatusCode::CONFLICT, "Edition already exists"),
    DeviceExists => ("device_exists", StatusCode::CONFLICT, "Device already registered"),
    SourceExists => ("source_exists", StatusCode::CONFLICT, "Source name taken"),
    JobStateConflict => ("job_state_conflict", StatusCode::CONFLICT, "Operation not allowed in the job's current state"),
    ApiKeyNotRotatable => ("api_key_not_rotatable", StatusCode::CONFLICT, "API key cannot be rotated"),
    InvalidTransition => ("invalid_transition", StatusCode::CONFLICT, "Operation not allowed in the tenant's current status"),
    RestoreWindowClosed => ("restore_window_closed", StatusCode::CONFLICT, "Restore window closed"),
    ResumeUnavailable => ("resume_unavailable", StatusCode::GONE, "Cannot resume after this event"),
    IdempotencyInProgress => ("idempotency_in_progress", StatusCode::CONFLICT, "Request with this Idempotency-Key in progress"),
    PreconditionFailed => ("precondition_failed", StatusCode::PRECONDITION_FAILED, "Precondition failed"),
    PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
    UriTooLong => ("uri_too_long", StatusCode::URI_TOO_LONG, "Request target too long"),
    UnsupportedMediaType => ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"),
    ValidationFailed => ("validation_failed", StatusCode::UNPROCESSABLE_ENTITY, "Validation failed"),
    IdempotencyKeyReused => ("idempotency_key_reused", StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key reused with a different request"),
    PreconditionRequired => ("precondition_required", StatusCode::PRECONDITION_REQUIRED, "Precondition required"),
    HeadersTooLarge => ("headers_too_large", StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "Request header fields too large"),
    RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded"),
    Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
    ServiceUnavailable => ("service_unavailable", StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
}

impl Kind {
    pub fn type_uri(self) -> String {
        format!("{TYPE_PREFIX}{}", self.code())
    }

    /// The kind a bare status stands for (framework responses that are not problems yet).
    pub fn for_status(status: StatusCode) -> Kind {
        match status {
            StatusCode::NOT_FOUND => Kind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Kind::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Kind::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Kind::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Kind::ValidationFailed,
            StatusCode::REQUEST_TIMEOUT => Kind::RequestTimeout,
            StatusCode::URI_TOO_LONG => Kind::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Kind::HeadersTooLarge,
            StatusCode::UNAUTHORIZED => Kind::Unauthorized,
            StatusCode::FORBIDDEN => Kind::Forbidden,
            StatusCode::SERVICE_UNAVAILABLE => Kind::ServiceUnavailable,
            StatusCode::TOO_MANY_REQUESTS => Kind::RateLimited,
            s if s.is_server_error() => Kind::Internal,
            _ => Kind::BadRequest,
        }
    }
}

/// A problem about to be sent. `traceId`, `tenantId` and `instance` are added by the edge
/// middleware, which knows the request.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(skip)]
    pub kind: Kind,
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (self.kind.status(), body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::Unavailable(_) | StoreError::NotMigrated { .. } => {
            tracing::error!(error = %e, "store unavailable");
            Problem::new(
                Kind::ServiceUnavailable,
                "the database is unavailable; retry later",
            )
            .with_header(header::RETRY_AFTER, "5")
        }
        StoreError::Contention(_) => {
            tracing::warn!(error = %e, "store contention");
            Problem::new(
                Kind::ServiceUnavailable,
                "the request conflicted with a concurrent one and nothing of it was written; retry it",
            )
            .with_header(header::RETRY_AFTER, "1")
        }
        other => {
            tracing::error!(error = %other, error.debug = ?other, "store error");
            Problem::new(
                Kind::Internal,
                "an internal error occurred; quote the traceId when reporting it",
            )
        }
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Self {
        let detail = e.to_string();
        match e {
            AppError::Validation(v) => {
                Problem::new(Kind::ValidationFailed, detail).with_errors(v.0)
            }
            AppError::TenantNotFound(_) => Problem::new(Kind::TenantNotFound, detail),
            AppError::EditionNotFound(_) => Problem::new(Kind::EditionNotFound, detail),
            AppError::SlugTaken(_) => Problem::new(Kind::SlugTaken, detail),
            AppError::EditionExists(_) => Problem::new(Kind::EditionExists, detail),
            AppError::Transition(TransitionError::NotAllowed { .. }) => {
                Problem::new(Kind::InvalidTransition, detail)
            }
            AppError::Transition(TransitionError::GraceExpired { .. }) => {
                Problem::new(Kind::RestoreWindowClosed, detail)
            }
            AppError::PreconditionRequired => Problem::new(Kind::PreconditionRequired, detail),
            AppError::PreconditionFailed { current } => {
                Problem::new(Kind::PreconditionFailed, detail).with_header(header::ETAG, &current)
            }
            AppError::IdempotencyKeyReused => Problem::new(Kind::IdempotencyKeyReused, detail),
            AppError::IdempotencyRace => Problem::new(Kind::IdempotencyInProgress, detail)
                .with_header(header::RETRY_AFTER, "1"),
            AppError::TenantAmbiguous(_) => Problem::new(Kind::TenantAmbiguous, detail),
            AppError::TenantRequired => Problem::new(Kind::TenantRequired, detail),
            AppError::TenantMismatch => Problem::new(Kind::TenantMismatch, detail),
            AppError::TenantSuspended => Problem::new(Kind::TenantSuspended, detail),
            AppError::InsufficientScope(_) => Problem::new(Kind::InsufficientScope, detail),
            AppError::KeyNotFound(_) => Problem::new(Kind::ApiKeyNotFound, detail),
            AppError::KeyNotRotatable(_) => Problem::new(Kind::ApiKeyNotRotatable, detail),
            AppError::DeviceNotFound(_) => Problem::new(Kind::DeviceNotFound, detail),
            AppError::DeviceExists(_) => Problem::new(Kind::DeviceExists, detail),
            AppError::Jobs(crate::jobs::service::JobsError::NotFound(_)) => {
                Problem::new(Kind::JobNotFound, detail)
            }
            AppError::Jobs(_) => Problem::new(Kind::JobStateConflict, detail),
            AppError::ScheduleNotFound(_) => Problem::new(Kind::ScheduleNotFound, detail),
            AppError::SourceNotFound(_) => Problem::new(Kind::SourceNotFound, detail),
            AppError::SourceExists(_) => Problem::new(Kind::SourceExists, detail),
            AppError::SubscriptionNotFound(_) => {
                Problem::new(Kind::WebhookSubscriptionNotFound, detail)
            }
            AppError::QuotaExceeded(_) => Problem::new(Kind::QuotaExceeded, detail),
            AppError::OutcomeUnknown(_) => {
                Problem::new(Kind::ServiceUnavailable, detail).with_header(header::RETRY_AFTER, "1")
            }
            AppError::Archive(_) => Problem::new(Kind::ServiceUnavailable, detail),
            AppError::Store(s) => store_problem(&s),
        }
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => Problem::new(Kind::Unauthorized, e.to_string())
                .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"tenantry\""),
            AuthError::Invalid => Problem::new(Kind::Unauthorized, e.to_string()).with_header(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"tenantry\", error=\"invalid_token\"",
            ),
            AuthError::InvalidToken(ref why) => {
                let challenge = format!(
                    "Bearer realm=\"tenantry\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace(['"', '\\'], "'")
                );
                Problem::new(Kind::Unauthorized, e.to_string())
                    .with_header(header::WWW_AUTHENTICATE, &challenge)
            }
            AuthError::NotOperator(_) | AuthError::NotOperatorToken => {
                Problem::new(Kind::OperatorRequired, e.to_string())
            }
            AuthError::Store(s) => store_problem(&s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let doc = include_str!("../../../../../docs/problems.md");
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert!(
                doc.contains(&format!("`{}`", k.type_uri())),
                "docs/problems.md does not document {}",
                k.code()
            );
        }
    }
}
