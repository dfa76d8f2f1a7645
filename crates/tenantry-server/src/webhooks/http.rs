//! `/v1/webhooks/…`: a tenant's subscriptions, secret rotation and test deliveries, the delivery
//! log, and replays.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry_domain::Scope;
use tenantry_store::IdempotencyRecord;
use tenantry_store::webhooks::{AttemptFilter, AttemptOutcome};

use super::service::{
    AttemptView, CreatedSubscription, ReplayInput, ReplayView, RotatedSecret, SubscriptionInput,
    SubscriptionView, TestView,
};
use crate::platform::http::AppState;
use crate::platform::http::extract::{ApiJson, ApiQuery, NoBody, NoParams, TenantCtx, need};
use crate::platform::http::idempotency::{self, Prepared, Reply};
use crate::platform::http::problem::{Kind, Problem};
use crate::platform::http::routes::{Access, Api, Doc, PAGING, QueryParam};

pub fn register(api: Api) -> Api {
    api.add(
        Method::POST,
        "/v1/webhooks/subscriptions",
        Access::Tenant(Scope::WebhooksManage),
        create,
    )
    .doc(
        Doc::new("Create a webhook subscription (its signing secret is shown once)")
            .body::<SubscriptionInput>()
            .ok::<CreatedSubscription>(201),
    )
    .add_queried(
        Method::GET,
        "/v1/webhooks/subscriptions",
        Access::Tenant(Scope::WebhooksRead),
        list,
    )
    .doc(Doc::new("List the tenant's webhook subscriptions, oldest first").ok::<SubscriptionList>(200))
    .add(
        Method::GET,
        "/v1/webhooks/subscriptions/{subscription}",
        Access::Tenant(Scope::WebhooksRead),
        show,
    )
    .doc(Doc::new("Read a webhook subscription (never its secret)").ok::<SubscriptionView>(200))
    .add(
        Method::PATCH,
        "/v1/webhooks/subscriptions/{subscription}",
        Access::Tenant(Scope::WebhooksManage),
        patch,
    )
    .doc(
        Doc::new("Change a webhook subscription (JSON merge patch; `enabled: true` re-enables a disabled one)")
            .body::<Value>()
            .ok::<SubscriptionView>(200),
    )
    .add(
        Method::DELETE,
        "/v1/webhooks/subscriptions/{subscription}",
        Access::Tenant(Scope::WebhooksManage),
        delete,
    )
    .doc(Doc::new("Delete a webhook subscription with its pending messages and delivery log").no_content())
    .add(
        Method::POST,
        "/v1/webhooks/subscriptions/{subscription}:rotate-secret",
        Access::Tenant(Scope::WebhooksManage),
        act,
    )
    .doc(
        Doc::new("Rotate the signing secret: the new one is shown once; the old one also signs for the grace period")
            .ok::<RotatedSecret>(200)
            .idempotent_by_itself(),
    )
    .add(
        Method::POST,
        "/v1/webhooks/subscriptions/{subscription}:test",
        Access::Tenant(Scope::WebhooksManage),
        act,
    )
    .doc(
        Doc::new("Send a webhook.test.v1 to this subscription")
            .ok::<TestView>(202)
            .idempotent_by_itself(),
    )
    .add_queried(
        Method::GET,
        "/v1/webhooks/deliveries",
        Access::Tenant(Scope::WebhooksRead),
        deliveries,
    )
    .doc(
        Doc::new("The delivery log: attempts, newest first")
            .page::<AttemptView>()
            .query(&PAGING)
            .query(&[
                QueryParam::string("subscription_id", "one subscription's attempts"),
                QueryParam::string("status", "delivered, failed, dead or gone"),
                QueryParam::string("event_type", "one event type"),
                QueryParam::string("from", "RFC 3339: attempts at or after"),
                QueryParam::string("to", "RFC 3339: attempts before"),
            ]),
    )
    .add(
        Method::POST,
        "/v1/webhooks/deliveries:replay",
        Access::Tenant(Scope::WebhooksManage),
        replay,
    )
    .doc(
        Doc::new("Deliver a subscription's messages again (same webhook-id), spread at the replay rate; `dry_run` counts them")
            .body::<ReplayInput>()
            .ok::<ReplayView>(200)
            .idempotent_by_itself(),
    )
}

#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionList {
    items: Vec<SubscriptionView>,
}

const SECRET_NOT_REPLAYED: &str = "the secret is shown only once and is not stored in clear; this is a replay of the original response — rotate the secret if it was lost";

/// A creation's reply, and its idempotency replay (the same without the secret).
fn created_reply(c: &CreatedSubscription, with_secret: bool) -> Reply {
    let mut body = serde_json::to_value(c).unwrap_or_default();
    if !with_secret && let Value::Object(o) = &mut body {
        o.remove("secret");
        o.insert("note".into(), Value::from(SECRET_NOT_REPLAYED));
    }
    Reply::json(
        StatusCode::CREATED,
        vec![(
            header::LOCATION.to_string(),
            format!("/v1/webhooks/subscriptions/{}", c.subscription.id),
        )],
        &body,
    )
}

async fn create(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksManage>,
    headers: HeaderMap,
    body: ApiJson<SubscriptionInput>,
) -> Result<Response, Problem> {
    let path = format!("/v1/webhooks/subscriptions?tenant={}", t.access.tenant.id);
    let idem = match idempotency::prepare(
        &state,
        &t.principal,
        "POST",
        &path,
        &headers,
        &body.document,
    )
    .await?
    {
        Prepared::Replay(resp) => return Ok(resp),
        Prepared::Fresh(idem) => idem,
    };
    let record = |c: &CreatedSubscription| -> IdempotencyRecord {
        created_reply(c, false).record(&state, idem.as_ref().expect("only built with a key"))
    };
    let builder: Option<&(dyn Fn(&CreatedSubscription) -> IdempotencyRecord + Send + Sync)> =
        idem.as_ref().map(|_| &record as _);
    let result = state
        .app
        .create_subscription(&t.ctx, t.scope(), body.value, builder)
        .await;
    idempotency::finish(&state, idem.as_ref(), result, |c| created_reply(c, true)).await
}

async fn list(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksRead>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Response, Problem> {
    let items = state.app.list_subscriptions(t.scope()).await?;
    Ok(axum::Json(SubscriptionList { items }).into_response())
}

async fn show(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksRead>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = state.app.get_subscription(t.scope(), &id).await?;
    Ok(axum::Json(state.app.subscription_view(&s)).into_response())
}

async fn patch(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksManage>,
    Path(id): Path<String>,
    body: ApiJson<Value>,
) -> Result<Response, Problem> {
    let v = state
        .app
        .patch_subscription(&t.ctx, t.scope(), &id, body.value)
        .await?;
    Ok(axum::Json(v).into_response())
}

async fn delete(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksManage>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let path = format!(
        "/v1/webhooks/subscriptions/{id}?tenant={}",
        t.access.tenant.id
    );
    idempotency::delete(&state, &t.principal, &path, &headers, |record| async {
        state
            .app
            .delete_subscription(&t.ctx, t.scope(), &id, record)
            .await
    })
    .await
}

/// `POST /v1/webhooks/subscriptions/{id}:rotate-secret` and `…:test`.
async fn act(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksManage>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    _: NoBody,
) -> Result<Response, Problem> {
    let Some((id, verb)) = raw.rsplit_once(':') else {
        return Err(Problem::new(
            Kind::MethodNotAllowed,
            "POST on a subscription needs a verb: …/subscriptions/{id}:rotate-secret or …/{id}:test",
        ));
    };
    if headers.contains_key(idempotency::HEADER) {
        return Err(Problem::new(
            Kind::InvalidHeader,
            format!(
                "POST …:{verb} does not take an Idempotency-Key (a rotation's answer holds a secret that is not kept: if it was lost, rotate again; a test repeated is another test)"
            ),
        ));
    }
    match verb {
        "test" => {
            let v = state.app.test_subscription(&t.ctx, t.scope(), id).await?;
            Ok((StatusCode::ACCEPTED, axum::Json(v)).into_response())
        }
        "rotate-secret" => {
            let v = state
                .app
                .rotate_subscription_secret(&t.ctx, t.scope(), id)
                .await?;
            Ok(axum::Json(v).into_response())
        }
        other => Err(Problem::new(
            Kind::NotFound,
            format!("no operation '{other}' on webhook subscriptions (rotate-secret, test)"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    subscription_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

async fn deliveries(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksRead>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Response, Problem> {
    // the filter's words, checked before anything is read (400, like any query parameter)
    let subscription_id = match q.subscription_id.as_deref().map(uuid::Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return Err(Problem::new(
                Kind::InvalidQuery,
                "subscription_id must be a subscription id (a UUID)",
            ));
        }
        None => None,
    };
    let outcome = match q.status.as_deref().map(AttemptOutcome::parse) {
        Some(Some(o)) => Some(o),
        Some(None) => {
            return Err(Problem::new(
                Kind::InvalidQuery,
                "status must be one of delivered, failed, dead, gone",
            ));
        }
        None => None,
    };
    let list = format!(
        "webhook-deliveries:{}:{:?}:{:?}:{:?}:{:?}:{:?}",
        t.access.tenant.id, q.subscription_id, q.status, q.event_type, q.from, q.to
    );
    let page = state
        .cursors
        .page_request(&list, q.limit, q.cursor.as_deref())
        .await?;
    let items = state
        .app
        .list_deliveries(
            t.scope(),
            &AttemptFilter {
                subscription_id,
                outcome,
                event_type: q.event_type,
                from: q.from,
                to: q.to,
            },
            page,
        )
        .await?;
    Ok(axum::Json(state.cursors.seal(&list, items).await?).into_response())
}

async fn replay(
    State(state): State<AppState>,
    t: TenantCtx<need::WebhooksManage>,
    headers: HeaderMap,
    body: ApiJson<ReplayInput>,
) -> Result<Response, Problem> {
    if headers.contains_key(idempotency::HEADER) {
        return Err(Problem::new(
            Kind::InvalidHeader,
            "POST /v1/webhooks/deliveries:replay does not take an Idempotency-Key: a replay repeated schedules the same messages again (same webhook-id), which receivers de-duplicate",
        ));
    }
    let v = state
        .app
        .replay_deliveries(&t.ctx, t.scope(), body.value)
        .await?;
    Ok(axum::Json(v).into_response())
}
