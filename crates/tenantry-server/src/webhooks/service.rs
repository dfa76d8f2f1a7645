//! Webhooks' use cases: a tenant's subscriptions (validated, the signing secret sealed, the
//! edition's limit held in the creating transaction), secret rotation, test deliveries, the
//! delivery log, and replays.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenantry_domain::webhook::{DeliveryPolicy, Filter, Ordering};
use tenantry_domain::{EventEnvelope, Page, PageRequest, TenantScope, ValidationErrors};
use tenantry_store::webhooks::{
    AttemptFilter, AttemptRecord, Created, MessageFilter, NewMessage, SealedSecret,
    SubscriptionRecord,
};
use tenantry_store::{Changes, StoreError};
use uuid::Uuid;

use super::signing;
use crate::events::catalog;
use crate::platform::{App, AppError, AppResult, Ctx, now};

/// Most event type patterns of one subscription.
const MAX_TYPES: usize = 50;
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

/// A subscription as written (`POST`), and the document a `PATCH` merges into.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// The endpoint: `https://…` (`http://` only with `[webhooks] allow_http`). Its addresses
    /// must be public (the egress guard); no credentials in the URL.
    pub url: String,
    /// Event types, exact (`tenant.created.v1`) or by prefix (`device.*`); `*` is every type.
    pub event_types: Vec<String>,
    /// A predicate over the CloudEvent's attributes and `data.…` fields (docs/webhooks.md),
    /// e.g. `edition in ['enterprise','standard'] and data.temp > 30`.
    #[serde(default)]
    pub filters: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub delivery_policy: DeliveryPolicy,
    /// At most this many deliveries per minute to the endpoint (1–60 000; none: no limit).
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    pub ordering: Ordering,
}

fn yes() -> bool {
    true
}

/// A subscription as shown (never its secrets).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub filters: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the platform disabled it (`410 Gone`, or consistent failure), when it did.
    pub disabled_reason: Option<String>,
    pub delivery_policy: DeliveryPolicy,
    pub rate_limit_per_minute: Option<u32>,
    pub ordering: Ordering,
    /// Since when every attempt has failed; absent when healthy.
    pub failing_since: Option<DateTime<Utc>>,
    /// While a rotated-out secret still signs: when it stops.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscription with a secret just made (shown this once).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks). Shown only in this response.
    pub secret: String,
}

/// A rotation's answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    pub subscription_id: Uuid,
    /// The new `whsec_…` secret, shown this once.
    pub secret: String,
    /// Until then deliveries carry a signature by the previous secret too.
    pub previous_expires_at: DateTime<Utc>,
}

/// One attempt of the delivery log.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub id: Uuid,
    pub subscription_id: Uuid,
    /// The message (`webhook-id`), the same on every attempt and replay.
    pub message_id: String,
    pub event_type: String,
    pub attempt: u32,
    /// `delivered`, `failed` (tried again), `dead` (no attempt follows), `gone` (410).
    pub status: String,
    pub status_code: Option<u16>,
    pub latency_ms: u32,
    /// The start of the response body.
    pub response: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        Self {
            id: a.id,
            subscription_id: a.subscription_id,
            message_id: message_id(a.message_id),
            event_type: a.event_type,
            attempt: a.attempt,
            status: a.outcome.as_str().into(),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response: a.response,
            error: a.error,
            at: a.at,
        }
    }
}

/// A replay's request.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayInput {
    pub subscription_id: Uuid,
    /// Messages created at or after this time (RFC 3339).
    pub from: DateTime<Utc>,
    /// … and before this one.
    pub to: DateTime<Utc>,
    /// Only these types (patterns as in subscriptions).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// `dead`, `delivered` or `pending`; absent: delivered and dead.
    #[serde(default)]
    pub status: Option<String>,
    /// Count what would be replayed; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A replay's answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayView {
    pub dry_run: bool,
    /// Messages matching the filter (at most `[webhooks] replay_max_messages`).
    pub matched: u64,
    /// Messages scheduled again (0 on a dry run).
    pub scheduled: u64,
    /// Whether more messages matched than one replay takes.
    pub truncated: bool,
    /// Re-deliveries are spread at this rate (per minute), so that a replay cannot flood the
    /// receiver.
    pub per_minute: u32,
    /// When the last re-delivery is due.
    pub last_due_at: Option<DateTime<Utc>>,
}

/// A test delivery's answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TestView {
    pub message_id: String,
    pub event_type: &'static str,
}

/// The `webhook-id` of a message.
pub fn message_id(id: Uuid) -> String {
    format!("msg_{}", id.simple())
}

/// What binds a sealed secret to its subscription.
pub(crate) fn seal_binding(tenant: tenantry_domain::TenantId, subscription: Uuid) -> String {
    format!("webhook-subscription:{tenant}:{subscription}")
}

/// The host of a URL (logs and events name it, never the whole URL: it may carry a token).
pub fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn subscription_event(
    trace_id: Option<String>,
    scope: &TenantScope,
    kind: &str,
    s: &SubscriptionRecord,
    extra: Value,
) -> EventEnvelope {
    let mut data = json!({
        "subscription_id": s.id, "url_host": host_of(&s.url),
        "event_types": s.event_types, "enabled": s.enabled,
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    EventEnvelope::v1(
        kind,
        s.id.to_string(),
        Some(scope.tenant_id()),
        Some(scope.edition().clone()),
        trace_id,
        now(),
        data,
    )
}

fn parse_id(id: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| AppError::SubscriptionNotFound(id.to_owned()))
}

impl App {
    /// Checks a subscription document; every problem named by its field. The URL's scheme, and
    /// the guard's verdict on an address (a literal, or what a name resolves to now).
    async fn check_subscription(&self, input: &SubscriptionInput, errors: &mut ValidationErrors) {
        let rt = self.webhooks();
        match reqwest::Url::parse(&input.url) {
            _ if input.url.len() > MAX_URL => {
                errors.push("url", format!("at most {MAX_URL} characters"));
            }
            Err(e) => errors.push("url", format!("not a URL: {e}")),
            Ok(u) => {
                let scheme_ok =
                    u.scheme() == "https" || (u.scheme() == "http" && rt.config().allow_http);
                if !scheme_ok {
                    errors.push(
                        "url",
                        if u.scheme() == "http" {
                            "must be https:// (http:// only when [webhooks] allow_http is set, for development)"
                        } else {
                            "must be an https:// URL"
                        },
                    );
                } else if u.host_str().is_none_or(str::is_empty) {
                    errors.push("url", "has no host");
                } else if !u.username().is_empty() || u.password().is_some() {
                    errors.push("url", "must not carry credentials (user:password@)");
                } else if let Err(why) = self.vet_destination(&u).await {
                    errors.push("url", why);
                }
            }
        }
        if input.event_types.is_empty() || input.event_types.len() > MAX_TYPES {
            errors.push("event_types", format!("1 to {MAX_TYPES} types"));
        }
        for (i, t) in input.event_types.iter().enumerate() {
            if !catalog::valid_pattern(t) {
                errors.push(
                    format!("event_types[{i}]"),
                    format!("'{t}' is not a type or a prefix pattern (`device.*`, `*`)"),
                );
            }
        }
        if let Some(f) = &input.filters
            && let Err(e) = Filter::parse(f)
        {
            errors.push("filters", e);
        }
        if input
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            errors.push(
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            );
        }
        input.delivery_policy.validate("delivery_policy", errors);
        if input
            .rate_limit_per_minute
            .is_some_and(|n| !(1..=60_000).contains(&n))
        {
            errors.push("rate_limit_per_minute", "1–60000");
        }
    }

    /// Refuses a destination the egress guard would refuse, where that is known at write time:
    /// an address literal, or a name whose every address (resolved now) is refused. A name that
    /// does not resolve now is accepted; every delivery resolves and vets again.
    async fn vet_destination(&self, url: &reqwest::Url) -> Result<(), String> {
        let egress = self.webhooks().egress()?;
        egress.check_url(url).map_err(|e| e.to_string())?;
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::net::lookup_host((host.to_owned(), port));
        let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(2), lookup).await else {
            return Ok(());
        };
        for a in addrs {
            let literal = match a.ip() {
                std::net::IpAddr::V4(v) => format!("https://{v}/"),
                std::net::IpAddr::V6(v) => format!("https://[{v}]/"),
            };
            if let Ok(u) = literal.parse::<reqwest::Url>()
                && let Err(e) = egress.check_url(&u)
            {
                return Err(format!("{host} resolves to a refused address: {e}"));
            }
        }
        Ok(())
    }

    fn record_from(
        scope: &TenantScope,
        id: Uuid,
        input: SubscriptionInput,
        secrets: Vec<SealedSecret>,
        created_at: DateTime<Utc>,
    ) -> SubscriptionRecord {
        SubscriptionRecord {
            id,
            tenant_id: scope.tenant_id(),
            url: input.url,
            event_types: input.event_types,
            filter: input.filters.filter(|f| !f.trim().is_empty()),
            description: input.description,
            enabled: input.enabled,
            disabled_reason: None,
            policy: input.delivery_policy,
            rate_limit_per_minute: input.rate_limit_per_minute,
            ordering: input.ordering,
            secrets,
            failing_since: None,
            created_at,
            updated_at: now(),
        }
    }

    async fn seal_secret(
        &self,
        scope: &TenantScope,
        id: Uuid,
        secret: &str,
    ) -> AppResult<SealedSecret> {
        let sealed = self
            .webhooks()
            .sealer()
            .seal(secret.as_bytes(), &seal_binding(scope.tenant_id(), id))
            .await
            .map_err(|e| AppError::Store(StoreError::corrupt(format!("sealing a secret: {e}"))))?;
        Ok(SealedSecret {
            sealed,
            created_at: now(),
            expires_at: None,
        })
    }

    pub fn subscription_view(&self, s: &SubscriptionRecord) -> SubscriptionView {
        let at = now();
        SubscriptionView {
            id: s.id,
            url: s.url.clone(),
            event_types: s.event_types.clone(),
            filters: s.filter.clone(),
            description: s.description.clone(),
            enabled: s.enabled,
            disabled_reason: s.disabled_reason.clone(),
            delivery_policy: s.policy,
            rate_limit_per_minute: s.rate_limit_per_minute,
            ordering: s.ordering,
            failing_since: s.failing_since,
            previous_secret_expires_at: s
                .secrets
                .iter()
                .filter_map(|k| k.expires_at)
                .filter(|e| *e > at)
                .max(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }

    pub async fn create_subscription(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        input: SubscriptionInput,
        idem: crate::platform::Idem<'_, CreatedSubscription>,
    ) -> AppResult<CreatedSubscription> {
        let mut errors = ValidationErrors::default();
        self.check_subscription(&input, &mut errors).await;
        errors.into_result()?;
        let limit = self
            .store()
            .editions()
            .get(scope.edition())
            .await?
            .map_or(1, |e| e.limits.webhook_subscriptions);
        let id = Uuid::now_v7();
        let secret = signing::new_secret();
        let sealed = self.seal_secret(scope, id, &secret).await?;
        let record = Self::record_from(scope, id, input, vec![sealed], now());
        let audit = ctx.audit(
            "webhook.subscription.create",
            "webhook_subscription",
            id.to_string(),
            Some(scope.tenant_id()),
            json!({"url_host": host_of(&record.url), "event_types": record.event_types}),
        );
        let mut changes = Changes::new(
            audit,
            subscription_event(
                ctx.trace_id(),
                scope,
                "webhook.subscription.created.v1",
                &record,
                json!({}),
            ),
        );
        let view = CreatedSubscription {
            subscription: self.subscription_view(&record),
            secret,
        };
        changes.idempotency = idem.map(|f| f(&view));
        match self
            .store()
            .webhooks()
            .create_subscription(scope, &record, limit, &changes)
            .await
            .map_err(AppError::from)?
        {
            Created::Created => Ok(view),
            Created::AtLimit { used } => Err(AppError::QuotaExceeded(format!(
                "webhook subscriptions: the {} edition allows {limit} per tenant, and the tenant has {used} (limit webhook_subscriptions = {limit}, used = {used})",
                scope.edition()
            ))),
        }
    }

    pub async fn get_subscription(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> AppResult<SubscriptionRecord> {
        self.store()
            .webhooks()
            .get_subscription(scope, parse_id(id)?)
            .await?
            .ok_or_else(|| AppError::SubscriptionNotFound(id.to_owned()))
    }

    pub async fn list_subscriptions(
        &self,
        scope: &TenantScope,
    ) -> AppResult<Vec<SubscriptionView>> {
        Ok(self
            .store()
            .webhooks()
            .list_subscriptions(scope)
            .await?
            .iter()
            .map(|s| self.subscription_view(s))
            .collect())
    }

    /// Applies a JSON merge patch to a subscription. Enabling a disabled one clears why it was
    /// disabled and its failure history.
    pub async fn patch_subscription(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
        patch: Value,
    ) -> AppResult<SubscriptionView> {
        let current = self.get_subscription(scope, id).await?;
        let view = self.subscription_view(&current);
        let mut doc = serde_json::to_value(SubscriptionInput {
            url: view.url.clone(),
            event_types: view.event_types.clone(),
            filters: view.filters.clone(),
            description: view.description.clone(),
            enabled: view.enabled,
            delivery_policy: view.delivery_policy,
            rate_limit_per_minute: view.rate_limit_per_minute,
            ordering: view.ordering,
        })
        .map_err(|e| AppError::Store(StoreError::corrupt(e)))?;
        if !patch.is_object() {
            return Err(ValidationErrors::single("", "a JSON merge patch (an object)").into());
        }
        tenantry_domain::sync::merge_patch(&mut doc, &patch);
        let input: SubscriptionInput =
            serde_json::from_value(doc).map_err(|e| ValidationErrors::single("", e.to_string()))?;
        let mut errors = ValidationErrors::default();
        self.check_subscription(&input, &mut errors).await;
        errors.into_result()?;
        let mut record = Self::record_from(
            scope,
            current.id,
            input,
            current.secrets.clone(),
            current.created_at,
        );
        if record.enabled && !current.enabled {
            record.failing_since = None;
            record.disabled_reason = None;
        } else {
            record.failing_since = current.failing_since;
            record.disabled_reason = if record.enabled {
                None
            } else {
                current.disabled_reason.clone()
            };
        }
        if record.updated_at <= current.updated_at {
            record.updated_at = current.updated_at + chrono::Duration::microseconds(1);
        }
        let audit = ctx.audit(
            "webhook.subscription.update",
            "webhook_subscription",
            record.id.to_string(),
            Some(scope.tenant_id()),
            json!({"patch_keys": patch.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())}),
        );
        let changes = Changes::new(
            audit,
            subscription_event(
                ctx.trace_id(),
                scope,
                "webhook.subscription.updated.v1",
                &record,
                json!({}),
            ),
        );
        self.store()
            .webhooks()
            .update_subscription(scope, &record, current.updated_at, &changes)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => AppError::SubscriptionNotFound(id.to_owned()),
                e => AppError::from(e),
            })?;
        Ok(self.subscription_view(&record))
    }

    pub async fn delete_subscription(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
        idempotency: Option<tenantry_store::IdempotencyRecord>,
    ) -> AppResult<()> {
        let current = self.get_subscription(scope, id).await?;
        let audit = ctx.audit(
            "webhook.subscription.delete",
            "webhook_subscription",
            current.id.to_string(),
            Some(scope.tenant_id()),
            json!({"url_host": host_of(&current.url)}),
        );
        let mut changes = Changes::new(
            audit,
            subscription_event(
                ctx.trace_id(),
                scope,
                "webhook.subscription.deleted.v1",
                &current,
                json!({}),
            ),
        );
        changes.idempotency = idempotency;
        if !self
            .store()
            .webhooks()
            .delete_subscription(scope, current.id, &changes)
            .await?
        {
            return Err(AppError::SubscriptionNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// A new secret; the previous one keeps signing for `[webhooks] rotation_grace_hours`.
    pub async fn rotate_subscription_secret(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
    ) -> AppResult<RotatedSecret> {
        let current = self.get_subscription(scope, id).await?;
        let at = now();
        let until =
            at + chrono::Duration::hours(i64::from(self.webhooks().config().rotation_grace_hours));
        let secret = signing::new_secret();
        let mut record = current.clone();
        // the one in force becomes the previous one; older previous ones are dropped
        let mut previous: Vec<SealedSecret> = current
            .secrets
            .iter()
            .filter(|k| k.expires_at.is_none())
            .cloned()
            .map(|mut k| {
                k.expires_at = Some(until);
                k
            })
            .collect();
        previous.truncate(1);
        record.secrets = vec![self.seal_secret(scope, current.id, &secret).await?];
        record.secrets.extend(previous);
        record.updated_at = at.max(current.updated_at + chrono::Duration::microseconds(1));
        let audit = ctx.audit(
            "webhook.subscription.rotate_secret",
            "webhook_subscription",
            record.id.to_string(),
            Some(scope.tenant_id()),
            json!({"previous_expires_at": until}),
        );
        let changes = Changes::new(
            audit,
            subscription_event(
                ctx.trace_id(),
                scope,
                "webhook.subscription.secret_rotated.v1",
                &record,
                json!({"previous_expires_at": until}),
            ),
        );
        self.store()
            .webhooks()
            .update_subscription(scope, &record, current.updated_at, &changes)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => AppError::SubscriptionNotFound(id.to_owned()),
                e => AppError::from(e),
            })?;
        Ok(RotatedSecret {
            subscription_id: record.id,
            secret,
            previous_expires_at: until,
        })
    }

    /// Queues a `webhook.test.v1` for one subscription (it is not in the event log).
    pub async fn test_subscription(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        id: &str,
    ) -> AppResult<TestView> {
        let s = self.get_subscription(scope, id).await?;
        let envelope = EventEnvelope::v1(
            "webhook.test.v1",
            s.id.to_string(),
            Some(scope.tenant_id()),
            Some(scope.edition().clone()),
            ctx.trace_id(),
            now(),
            json!({"subscription_id": s.id, "message": "a test delivery from tenantry"}),
        );
        let ce = envelope.to_logged_cloud_event(crate::events::runtime::source(), 0);
        let body =
            serde_json::to_string(&ce).map_err(|e| AppError::Store(StoreError::corrupt(e)))?;
        let mid = Uuid::now_v7();
        self.store()
            .webhooks()
            .enqueue(
                scope,
                &[NewMessage {
                    id: mid,
                    tenant_id: scope.tenant_id(),
                    subscription_id: s.id,
                    event_id: *envelope.id.as_uuid(),
                    event_seq: 0,
                    event_type: "webhook.test.v1".into(),
                    partition_key: format!("test:{mid}"),
                    body,
                    trace_parent: ctx.trace_parent(),
                    at: now(),
                }],
            )
            .await?;
        self.webhooks().wake();
        Ok(TestView {
            message_id: message_id(mid),
            event_type: "webhook.test.v1",
        })
    }

    pub async fn list_deliveries(
        &self,
        scope: &TenantScope,
        filter: &AttemptFilter,
        page: PageRequest,
    ) -> AppResult<Page<AttemptView>> {
        let page = self
            .store()
            .webhooks()
            .list_attempts(scope, filter, page)
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(AttemptView::from).collect(),
            page_info: page.page_info,
        })
    }

    /// Schedules matching messages again (same `webhook-id`, attempts from 1), spread at the
    /// replay rate: `[webhooks] replay_per_minute`, or the subscription's own limit if lower.
    pub async fn replay_deliveries(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        input: ReplayInput,
    ) -> AppResult<ReplayView> {
        let mut errors = ValidationErrors::default();
        if input.to <= input.from {
            errors.push("to", "must be after from");
        }
        if let Some(s) = &input.status
            && !["dead", "delivered", "pending"].contains(&s.as_str())
        {
            errors.push("status", "one of dead, delivered, pending");
        }
        for (i, t) in input.event_types.iter().flatten().enumerate() {
            if !catalog::valid_pattern(t) {
                errors.push(
                    format!("event_types[{i}]"),
                    format!("'{t}' is not a type pattern"),
                );
            }
        }
        errors.into_result()?;
        let s = self
            .get_subscription(scope, &input.subscription_id.to_string())
            .await?;
        let config = self.webhooks().config();
        let max = config.replay_max_messages;
        let found = self
            .store()
            .webhooks()
            .messages(
                scope,
                &MessageFilter {
                    subscription_id: s.id,
                    from: input.from,
                    to: input.to,
                    status: input.status.clone(),
                },
                max + 1,
            )
            .await?;
        let truncated = found.len() > max as usize;
        let matched: Vec<_> = found
            .into_iter()
            .take(max as usize)
            .filter(|m| {
                input
                    .event_types
                    .as_ref()
                    .is_none_or(|ts| ts.iter().any(|t| catalog::matches(t, &m.event_type)))
            })
            .collect();
        let per_minute = s
            .rate_limit_per_minute
            .map_or(config.replay_per_minute, |r| {
                r.min(config.replay_per_minute)
            })
            .max(1);
        let step = chrono::Duration::microseconds(60_000_000 / i64::from(per_minute));
        let start = now();
        let due: Vec<(Uuid, DateTime<Utc>)> = matched
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, start + step * i32::try_from(i).unwrap_or(i32::MAX)))
            .collect();
        let last_due_at = due.last().map(|d| d.1);
        let scheduled = if input.dry_run || due.is_empty() {
            0
        } else {
            let n = self
                .store()
                .webhooks()
                .reschedule(scope, &due, start)
                .await?;
            tracing::info!(
                subscription = %s.id, messages = n, per_minute,
                actor = %ctx.actor.id, "webhook deliveries replayed"
            );
            self.webhooks().wake();
            n
        };
        Ok(ReplayView {
            dry_run: input.dry_run,
            matched: matched.len() as u64,
            scheduled,
            truncated,
            per_minute,
            last_due_at,
        })
    }
}
