//! Device telemetry's use cases: ingest a batch (each event checked on its own, stored once per
//! `(tenant, event_id)`, acknowledged only once committed) and read a device's events.

use chrono::Duration;
use serde_json::Value;
use tenantry_domain::telemetry::{
    CheckedBatch, Rejection, RejectionKind, TelemetryRules, check_batch,
};
use tenantry_domain::{Page, PageRequest, Tenant, TenantScope, ValidationErrors};
use tenantry_store::telemetry::{BucketStats, Position, StatsFilter, StoredEvent, TelemetryFilter};

/// The most buckets one stats query returns.
pub const MAX_BUCKETS: i64 = 10_000;

use crate::platform::{App, AppResult, now};

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
    /// Checks and stores a batch for `tenant`. `device` is the device a device key speaks for:
    /// its events of any other device are rejected.
    pub async fn ingest_telemetry(
        &self,
        tenant: &Tenant,
        scope: &TenantScope,
        device: Option<&str>,
        events: Vec<Result<Value, String>>,
        rules: &TelemetryRules,
        max_events: u32,
    ) -> AppResult<Ingested> {
        if events.is_empty() || events.len() > max_events as usize {
            return Err(ValidationErrors::single(
                "events",
                format!("between 1 and {max_events} events per request"),
            )
            .into());
        }
        let at = now();
        // the tenant's edition says how long events are kept: older ones are not taken
        let retention_days = self
            .store
            .editions()
            .get(&tenant.edition)
            .await?
            .map_or(30, |e| e.limits.retention_days);
        let oldest = at - Duration::days(i64::from(retention_days));
        let CheckedBatch {
            mut accepted,
            duplicates,
            mut rejected,
        } = check_batch(events, at, oldest, rules);
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
            rejected.sort_by_key(|r| r.index);
        }
        let events: Vec<_> = accepted.into_iter().map(|(_, e)| e).collect();
        let stored = if events.is_empty() {
            tenantry_store::telemetry::Inserted::default()
        } else {
            self.store.telemetry().insert(scope, &events, at).await?
        };
        if !events.is_empty() {
            metrics::histogram!("telemetry_commit_events").record(events.len() as f64);
        }
        Ok(Ingested {
            accepted: stored.stored,
            duplicates: duplicates + stored.duplicates,
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
