//! Device telemetry's use cases: ingest a batch (each event checked on its own, stored once per
//! `(tenant, event_id)`, acknowledged only once committed) and read a device's events.

use chrono::Duration;
use serde_json::Value;
use std::collections::HashSet;
use tenantry_domain::telemetry::{CheckedBatch, Rejection, RejectionKind, check_batch};
use tenantry_domain::{Page, PageRequest, TenantScope, ValidationErrors};

use tenantry_domain::telemetry::TelemetryEvent;
use tenantry_store::telemetry::{
    BucketStats, Position, Registration, StatsFilter, StoredEvent, TelemetryFilter,
};
use tenantry_store::{Changes, DeviceRecord};

/// The most buckets one stats query returns.
pub const MAX_BUCKETS: i64 = 10_000;

use crate::platform::{App, AppResult, Ctx, now};

use super::config::UnknownDevicePolicy;
use super::runtime::Accepted;

/// The audit record and event of a device registered by its first event.
pub(crate) fn registered_by_event(ctx: &Ctx, scope: &TenantScope, d: &DeviceRecord) -> Changes {
    let audit = ctx.audit(
        "device.register",
        "device",
        d.device_id.clone(),
        Some(scope.tenant_id()),
        serde_json::json!({ "device_id": d.device_id, "registered_by": "first_event" }),
    );
    Changes::new(
        audit,
        crate::access::devices::device_event(ctx, scope, "device.created.v1", d),
    )
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ingested {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events stored before (a retry, another request) or repeated in the batch.
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

impl App {
    /// Checks and stores a batch for the scope's tenant, whose edition keeps events `retention_days` (older
    /// ones are refused). `device` is the device a device key speaks for:
    /// its events of any other device are rejected. Returns once the accepted events are
    /// committed (in a group commit shared with concurrent requests).
    pub async fn ingest_telemetry(
        &self,
        ctx: &Ctx,
        scope: &TenantScope,
        device: Option<&str>,
        events: Vec<Result<Value, String>>,
        retention_days: u32,
    ) -> AppResult<Ingested> {
        let config = &self.settings.telemetry;
        let max_events = config.max_events;
        if events.is_empty() || events.len() > max_events as usize {
            return Err(ValidationErrors::single(
                "events",
                format!("between 1 and {max_events} events per request"),
            )
            .into());
        }
        let at = now();
        let oldest = at - Duration::days(i64::from(retention_days));
        let CheckedBatch {
            mut accepted,
            duplicates,
            mut rejected,
        } = check_batch(events, at, oldest, &config.rules());
        if let Some(own) = device {
            accepted.retain(|(index, e)| {
                let mine = e.device_id == own;
                if !mine {
                    rejected.push(Rejection {
                        index: *index,
                        kind: RejectionKind::WrongDevice,
                        detail: format!(
                            "this device key sends events of device '{own}' only, not '{}'",
                            e.device_id
                        ),
                    });
                }
                mine
            });
        }
        if accepted.is_empty() {
            rejected.sort_by_key(|r| r.index);
            return Ok(Ingested {
                accepted: 0,
                duplicates,
                rejected,
            });
        }
        let (indexes, events): (Vec<usize>, Vec<TelemetryEvent>) = accepted.into_iter().unzip();
        let register: Option<Box<Registration<'static>>> = match config.unknown_devices {
            UnknownDevicePolicy::Reject => None,
            UnknownDevicePolicy::Register => {
                let (ctx, scope) = (ctx.clone(), scope.clone());
                Some(Box::new(move |d: &DeviceRecord| {
                    registered_by_event(&ctx, &scope, d)
                }))
            }
        };
        let (events, outcome) = self
            .telemetry
            .commit(&self.store, scope.clone(), events, at, register)
            .await;
        let outcome = outcome?;
        for device_id in &outcome.registered {
            tracing::info!(device_id = %device_id, "device registered by its first event");
        }
        if !outcome.unknown.is_empty() {
            for (index, e) in indexes.iter().zip(&events) {
                if outcome.unknown.contains(&e.device_id) {
                    rejected.push(Rejection {
                        index: *index,
                        kind: RejectionKind::UnknownDevice,
                        detail: format!(
                            "device '{}' is not registered in this tenant (register it with POST /v1/devices)",
                            e.device_id
                        ),
                    });
                }
            }
        }
        rejected.sort_by_key(|r| r.index);
        if self.telemetry.has_subscribers() {
            let stored: HashSet<&str> = outcome.stored_ids.iter().map(String::as_str).collect();
            self.telemetry.publish(Accepted {
                scope: scope.clone(),
                events: events
                    .into_iter()
                    .filter(|e| stored.contains(e.event_id.as_str()))
                    .collect(),
                received_at: at,
            });
        }
        Ok(Ingested {
            accepted: outcome.inserted.stored,
            duplicates: duplicates + outcome.inserted.duplicates,
            rejected,
        })
    }

    /// Per-bucket summaries; at most [`MAX_BUCKETS`] buckets in the range.
    pub async fn telemetry_stats(
        &self,
        scope: &TenantScope,
        filter: &StatsFilter,
    ) -> AppResult<Vec<BucketStats>> {
        let span = (filter.to - filter.from).num_seconds();
        if span <= 0 {
            // an empty range has no buckets
            return Ok(Vec::new());
        }
        if span / filter.bucket_seconds.max(1) > MAX_BUCKETS {
            return Err(ValidationErrors::single(
                "bucket",
                format!(
                    "the range holds more than {MAX_BUCKETS} buckets of this width: choose a wider bucket or a shorter range"
                ),
            )
            .into());
        }
        Ok(self.store.telemetry().stats(scope, filter).await?)
    }

    /// A page of one device's events.
    pub async fn device_telemetry(
        &self,
        scope: &TenantScope,
        filter: &TelemetryFilter,
        page: PageRequest,
    ) -> AppResult<Page<StoredEvent>> {
        let after = page.after.and_then(Position::from_cursor);
        let rows = self
            .store
            .telemetry()
            .list(scope, filter, page.limit, after)
            .await?;
        Ok(Page::from_fetched(rows, page.limit, |e| {
            Position::of(e).to_cursor().0
        }))
    }
}
