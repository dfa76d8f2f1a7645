//! HTTP side of `Idempotency-Key`: validate the header, replay a stored response, and turn a
//! resource into the record stored with its write.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use tenantry_store::IdempotencyRecord;

use crate::platform::AppError;
use crate::platform::http::AppState;
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::idempotency::IdempotentRequest;
use tenantry_domain::Principal;

pub const HEADER: &str = "idempotency-key";

/// What a handler answers: a status, headers and a JSON body — stored as-is for replays.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json<T: serde::Serialize>(
        status: StatusCode,
        headers: Vec<(String, String)>,
        body: &T,
    ) -> Self {
        Self {
            status,
            headers,
            body: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    /// `204 No Content`: the answer of a delete.
    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn into_response(self) -> Response {
        let empty = self.body.is_empty();
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if !empty {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in self.headers {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                h.insert(n, v);
            }
        }
        resp
    }

    pub fn record(&self, state: &AppState, req: &IdempotentRequest) -> IdempotencyRecord {
        req.record(
            &state.app,
            self.status.as_u16(),
            self.headers.clone(),
            self.body.clone(),
        )
    }
}

fn replay(r: IdempotencyRecord) -> Response {
    let reply = Reply {
        status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        headers: r.headers,
        body: r.body,
    };
    let mut resp = reply.into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

/// Either the stored response of an earlier identical request, or the request to process.
pub enum Prepared {
    Replay(Response),
    Fresh(Option<IdempotentRequest>),
}

pub async fn prepare(
    state: &AppState,
    principal: &Principal,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    document: &serde_json::Value,
) -> Result<Prepared, Problem> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(Prepared::Fresh(None));
    };
    let key = value
        .to_str()
        .map_err(|_| Problem::new(Kind::InvalidHeader, "Idempotency-Key must be visible ASCII"))?;
    let req = IdempotentRequest::new(
        &crate::access::keys::scope_id(principal),
        method,
        path,
        key,
        document,
    )
    .map_err(|e| Problem::new(Kind::InvalidHeader, e.to_string()))?;
    match state.app.idempotent_replay(&req).await? {
        Some(r) => Ok(Prepared::Replay(replay(r))),
        None => Ok(Prepared::Fresh(Some(req))),
    }
}

/// A `DELETE` (an operation that answers `204`) under `Idempotency-Key`: a retry replays the
/// first answer; otherwise `op` runs with the record to commit with its change.
pub async fn delete<F, Fut>(
    state: &AppState,
    principal: &Principal,
    path: &str,
    headers: &HeaderMap,
    op: F,
) -> Result<Response, Problem>
where
    F: FnOnce(Option<IdempotencyRecord>) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    let req = match prepare(
        state,
        principal,
        "DELETE",
        path,
        headers,
        &serde_json::Value::Null,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(req) => req,
    };
    let record = req.as_ref().map(|r| Reply::no_content().record(state, r));
    let result = op(record).await;
    finish(state, req.as_ref(), result, |()| Reply::no_content()).await
}

/// Finishes an idempotent write: on a lost race for the same key, answers what the winner stored.
pub async fn finish<T>(
    state: &AppState,
    req: Option<&IdempotentRequest>,
    result: Result<T, AppError>,
    reply: impl FnOnce(&T) -> Reply,
) -> Result<Response, Problem> {
    match result {
        Ok(v) => Ok(reply(&v).into_response()),
        Err(AppError::IdempotencyRace) if req.is_some() => {
            let req = req.expect("checked");
            match state.app.idempotent_replay(req).await? {
                Some(r) => Ok(replay(r)),
                None => Err(AppError::IdempotencyRace.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
