//! Telemetry's background work, on the job engine: `telemetry.retention` (retention and
//! archival) and `telemetry.partitions` (month partitions ahead and behind), each fired by a
//! platform schedule that start-up creates when it is missing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tenantry_domain::Actor;
use tenantry_domain::job::RetryPolicy;

use crate::jobs::schedules::ScheduleRequest;
use crate::jobs::workers::{JobContext, JobError, JobHandler, JobKind, Registry};
use crate::platform::{App, AppError, Ctx, PlatformOrTenant, now};

pub const RETENTION: &str = "telemetry.retention";
pub const PARTITIONS: &str = "telemetry.partitions";

struct Retention(App);
struct Partitions(App);

#[async_trait]
impl JobHandler for Retention {
    async fn run(&self, _job: &mut JobContext) -> Result<(), JobError> {
        self.0
            .run_telemetry_retention(now())
            .await
            .map(|_| ())
            .map_err(|e| JobError::Retryable(e.to_string()))
    }
}

#[async_trait]
impl JobHandler for Partitions {
    async fn run(&self, _job: &mut JobContext) -> Result<(), JobError> {
        // a year back (restores) and three months ahead
        let at = now();
        self.0
            .store()
            .telemetry()
            .prepare(
                at - chrono::Duration::days(366),
                at + chrono::Duration::days(92),
            )
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))
    }
}

pub fn register(r: &mut Registry, app: &App) {
    let retry = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(30),
        cap: Duration::from_secs(30 * 60),
    };
    r.register(JobKind {
        name: RETENTION,
        description: "removes events older than each tenant's retention, archiving them first where archival is on (platform)",
        lease: Duration::from_secs(300),
        retry,
        handler: Arc::new(Retention(app.clone())),
        prepare: crate::jobs::workers::no_prepare,
    });
    r.register(JobKind {
        name: PARTITIONS,
        description: "creates the month partitions of telemetry a year back and three months ahead (platform)",
        lease: Duration::from_secs(60),
        retry,
        handler: Arc::new(Partitions(app.clone())),
        prepare: crate::jobs::workers::no_prepare,
    });
}

/// Creates the platform schedules of these jobs where they are missing (an operator may have
/// changed or disabled them: those are left as they are).
pub async fn ensure_schedules(app: &App, registry: &Registry) {
    let cron = app.settings().telemetry.retention_cron.clone();
    let ctx = Ctx::new(Actor::system(), None);
    for (name, cron, kind) in [
        ("telemetry-retention", cron, RETENTION),
        ("telemetry-partitions", "7 */6 * * *".to_owned(), PARTITIONS),
    ] {
        match app.get_schedule(PlatformOrTenant::Platform, name).await {
            Ok(_) => continue,
            Err(AppError::ScheduleNotFound(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, schedule = name, "cannot read a telemetry schedule");
                continue;
            }
        }
        let request = ScheduleRequest {
            name: name.into(),
            cron: Some(cron),
            interval_seconds: None,
            kind: kind.into(),
            payload: None,
            tenant: None,
            enabled: true,
        };
        if let Err(e) = app
            .put_schedule(&ctx, PlatformOrTenant::Platform, registry, request, None)
            .await
        {
            tracing::warn!(error = %e, schedule = name, "cannot create a telemetry schedule");
        }
    }
}
