//! Retention and archival of device events (issue 12), run by the job engine.
//!
//! For every tenant not on legal hold, events recorded before its edition's retention are
//! removed — archived first where archival is on (the tenant's setting, else whether its edition
//! is in `[telemetry] archive_editions`). An archive is one gzip-compressed NDJSON file per tenant
//! and month in the blob store, written with its manifest (counts, time range, SHA-256 of the
//! file) before anything is removed; the removal and its audit record commit together. Month
//! partitions (PostgreSQL) older than the longest retention of any edition are dropped once
//! empty. `restore_telemetry_archive` loads an archive back (idempotently: event ids already
//! stored are duplicates).

use std::collections::HashMap;
use std::io::{BufRead, Write};

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use tenantry_domain::telemetry::TelemetryEvent;
use tenantry_domain::{Actor, PageRequest, Tenant, TenantId, TenantRef, TenantScope};
use tenantry_store::telemetry::{Batch, Position, RetentionSettings, UnknownDevices};
use tenantry_store::{Changes, DeviceRecord, TenantFilter};

use crate::platform::{App, AppError, AppResult, Ctx, now};

/// Events read from the store per page while archiving.
const PAGE: u32 = 5_000;

/// What one retention run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionReport {
    pub tenants: usize,
    /// Tenants skipped for their legal hold.
    pub held: Vec<TenantId>,
    pub removed: u64,
    /// Manifest keys of the archives written.
    pub archives: Vec<String>,
    /// Month partitions dropped (PostgreSQL).
    pub dropped_months: Vec<NaiveDate>,
}

/// An archive's manifest: what the file holds and how to check it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant_id: TenantId,
    pub month: String,
    /// The range of `recorded_at` archived: `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub count: u64,
    pub first_recorded_at: DateTime<Utc>,
    pub last_recorded_at: DateTime<Utc>,
    /// The data file's key and the SHA-256 (hex) of its bytes.
    pub data: String,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

const FORMAT: &str = "tenantry-telemetry-ndjson-gzip-v1";

/// One event as an archive line.
#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    event: TelemetryEvent,
    received_at: DateTime<Utc>,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub tenant_id: Option<TenantId>,
    pub events: u64,
    pub stored: u64,
    pub duplicates: u64,
}

fn month_start(t: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(t.year(), t.month(), 1).unwrap_or(NaiveDate::MIN)
}

fn utc(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn archive_error(what: impl std::fmt::Display) -> AppError {
    AppError::Archive(what.to_string())
}

impl App {
    /// One retention run over every tenant at `at`.
    pub async fn run_telemetry_retention(&self, at: DateTime<Utc>) -> AppResult<RetentionReport> {
        let config = &self.settings.telemetry;
        let editions: HashMap<String, u32> = self
            .store
            .editions()
            .list()
            .await?
            .into_iter()
            .map(|e| (e.key.as_str().to_owned(), e.limits.retention_days))
            .collect();
        let longest = editions.values().copied().max().unwrap_or(90);
        let mut report = RetentionReport::default();
        let mut page = PageRequest::first(200);
        loop {
            let tenants = self
                .store
                .tenants()
                .list(&TenantFilter::default(), page)
                .await?;
            for t in &tenants.items {
                report.tenants += 1;
                let settings = self.store.telemetry().settings(t.id).await?;
                if settings.legal_hold {
                    report.held.push(t.id);
                    continue;
                }
                let days = editions.get(t.edition.as_str()).copied().unwrap_or(30);
                let archive = settings.archive.unwrap_or_else(|| {
                    config
                        .archive_editions
                        .iter()
                        .any(|e| e == t.edition.as_str())
                });
                self.expire_tenant(
                    t,
                    at - Duration::days(i64::from(days)),
                    archive,
                    &mut report,
                )
                .await?;
            }
            match tenants
                .page_info
                .next_cursor
                .as_deref()
                .and_then(|c| tenantry_domain::Cursor::decode(c).ok())
            {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        report.dropped_months = self
            .store
            .telemetry()
            .drop_empty_months(at - Duration::days(i64::from(longest)))
            .await?;
        tracing::info!(
            tenants = report.tenants,
            held = report.held.len(),
            removed = report.removed,
            archives = report.archives.len(),
            dropped_months = report.dropped_months.len(),
            "telemetry retention ran"
        );
        Ok(report)
    }

    async fn expire_tenant(
        &self,
        t: &Tenant,
        cutoff: DateTime<Utc>,
        archive: bool,
        report: &mut RetentionReport,
    ) -> AppResult<()> {
        let scope = crate::access::scope::system_scope(t, "telemetry.retention");
        let Some(oldest) = self.store.telemetry().oldest_before(&scope, cutoff).await? else {
            return Ok(());
        };
        let mut archives = Vec::new();
        if archive {
            let mut month = month_start(oldest);
            while utc(month) < cutoff {
                let next = month.checked_add_months(Months::new(1)).unwrap_or(month);
                let to = utc(next).min(cutoff);
                if let Some(key) = self.archive_range(&scope, month, utc(month), to).await? {
                    archives.push(key);
                }
                if next == month {
                    break;
                }
                month = next;
            }
        }
        let tenant = t.id;
        let keys = archives.clone();
        let ctx = Ctx::new(Actor::system(), None);
        let removed = self
            .store
            .telemetry()
            .remove_before(&scope, cutoff, &move |n| {
                let audit = ctx.audit(
                    "telemetry.retention",
                    "telemetry",
                    tenant.to_string(),
                    Some(tenant),
                    json!({ "removed": n, "recorded_before": cutoff, "archives": keys }),
                );
                Changes {
                    audit: vec![audit],
                    ..Changes::default()
                }
            })
            .await?;
        report.removed += removed;
        report.archives.extend(archives);
        Ok(())
    }

    /// Writes the tenant's events recorded in `[from, to)` to the blob store (data, then its
    /// manifest); `None` when there are none. Returns the manifest's key.
    async fn archive_range(
        &self,
        scope: &TenantScope,
        month: NaiveDate,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> AppResult<Option<String>> {
        let blobs = self.telemetry.archive().map_err(archive_error)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let (mut count, mut first, mut last) = (0_u64, None, None);
        let mut after: Option<Position> = None;
        loop {
            let page = self
                .store
                .telemetry()
                .export(scope, from, to, after, PAGE)
                .await?;
            let Some(tail) = page.last() else { break };
            after = Some(Position::of(tail));
            for e in page {
                first.get_or_insert(e.event.recorded_at);
                last = Some(e.event.recorded_at);
                count += 1;
                let line = Line {
                    event: e.event,
                    received_at: e.received_at,
                };
                serde_json::to_writer(&mut gz, &line).map_err(archive_error)?;
                gz.write_all(b"\n").map_err(archive_error)?;
            }
        }
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(None);
        };
        let bytes = gz.finish().map_err(archive_error)?;
        let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%S%6fZ").to_string();
        let base = format!(
            "telemetry/{}/{}/{}_{}",
            scope.tenant_id(),
            month.format("%Y-%m"),
            stamp(from),
            stamp(to)
        );
        let manifest = Manifest {
            format: FORMAT.into(),
            tenant_id: scope.tenant_id(),
            month: month.format("%Y-%m").to_string(),
            from,
            to,
            count,
            first_recorded_at: first,
            last_recorded_at: last,
            data: format!("{base}.ndjson.gz"),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            created_at: now(),
        };
        blobs
            .put(&manifest.data, bytes)
            .await
            .map_err(archive_error)?;
        let key = format!("{base}.manifest.json");
        blobs
            .put(
                &key,
                serde_json::to_vec_pretty(&manifest).map_err(archive_error)?,
            )
            .await
            .map_err(archive_error)?;
        Ok(Some(key))
    }

    /// The manifests of a tenant's archives (of every tenant without one), sorted.
    pub async fn telemetry_archives(&self, tenant: Option<TenantId>) -> AppResult<Vec<String>> {
        let blobs = self.telemetry.archive().map_err(archive_error)?;
        let prefix = match tenant {
            Some(t) => format!("telemetry/{t}/"),
            None => "telemetry/".into(),
        };
        Ok(blobs
            .list(&prefix)
            .await
            .map_err(archive_error)?
            .into_iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .collect())
    }

    /// Loads the archive of `manifest_key` back: the file is checked against its manifest
    /// (SHA-256, count), then its events are stored as ingested (devices registered as needed);
    /// events already stored count as duplicates.
    pub async fn restore_telemetry_archive(&self, manifest_key: &str) -> AppResult<Restored> {
        let blobs = self.telemetry.archive().map_err(archive_error)?;
        let manifest: Manifest = match blobs.get(manifest_key).await.map_err(archive_error)? {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| archive_error(format!("{manifest_key}: not a manifest: {e}")))?,
            None => {
                return Err(archive_error(format!(
                    "no archive manifest '{manifest_key}'"
                )));
            }
        };
        if manifest.format != FORMAT {
            return Err(archive_error(format!(
                "{manifest_key}: unknown format '{}'",
                manifest.format
            )));
        }
        let bytes = blobs
            .get(&manifest.data)
            .await
            .map_err(archive_error)?
            .ok_or_else(|| {
                archive_error(format!("the data file '{}' is missing", manifest.data))
            })?;
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        if digest != manifest.sha256 {
            return Err(archive_error(format!(
                "'{}' does not match its manifest (SHA-256 {digest}, expected {})",
                manifest.data, manifest.sha256
            )));
        }
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..])).lines() {
            let line = line.map_err(archive_error)?;
            if line.is_empty() {
                continue;
            }
            lines.push(serde_json::from_str::<Line>(&line).map_err(archive_error)?);
        }
        if lines.len() as u64 != manifest.count {
            return Err(archive_error(format!(
                "'{}' holds {} events, its manifest says {}",
                manifest.data,
                lines.len(),
                manifest.count
            )));
        }
        let tenant = self
            .store
            .tenants()
            .get(&TenantRef::Id(manifest.tenant_id))
            .await?
            .ok_or_else(|| AppError::TenantNotFound(manifest.tenant_id.to_string()))?;
        let scope = crate::access::scope::system_scope(&tenant, "telemetry.restore");
        self.store
            .telemetry()
            .prepare(manifest.first_recorded_at, manifest.last_recorded_at)
            .await?;
        let ctx = Ctx::new(Actor::system(), None);
        let register = |d: &DeviceRecord| super::service::registered_by_event(&ctx, &scope, d);
        let mut out = Restored {
            tenant_id: Some(tenant.id),
            events: manifest.count,
            ..Restored::default()
        };
        // events of one request share their received_at: restored together, as they came
        let mut start = 0;
        while start < lines.len() {
            let received_at = lines[start].received_at;
            let mut end = start;
            while end < lines.len() && end - start < 1000 && lines[end].received_at == received_at {
                end += 1;
            }
            let events: Vec<TelemetryEvent> =
                lines[start..end].iter().map(|l| l.event.clone()).collect();
            let batch = Batch {
                scope: &scope,
                events: &events,
                received_at,
                unknown_devices: UnknownDevices::Register(&register),
            };
            for o in self.store.telemetry().insert_group(&[batch]).await? {
                out.stored += o.inserted.stored as u64;
                out.duplicates += o.inserted.duplicates as u64;
            }
            start = end;
        }
        Ok(out)
    }

    /// A tenant's retention settings.
    pub async fn telemetry_settings(&self, tenant: TenantId) -> AppResult<RetentionSettings> {
        Ok(self.store.telemetry().settings(tenant).await?)
    }

    /// Places or lifts a tenant's legal hold and sets its archival (audited).
    pub async fn put_telemetry_settings(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        settings: RetentionSettings,
    ) -> AppResult<RetentionSettings> {
        let audit = ctx.audit(
            "tenant.telemetry_settings",
            "tenant",
            tenant.to_string(),
            Some(tenant),
            json!({ "legal_hold": settings.legal_hold, "archive": settings.archive }),
        );
        let changes = Changes {
            audit: vec![audit],
            ..Changes::default()
        };
        self.store
            .telemetry()
            .put_settings(tenant, &settings, now(), &changes)
            .await?;
        Ok(settings)
    }
}
