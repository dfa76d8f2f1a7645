//! The conformance suites: one module of cases per store port, every case run against every
//! adapter. Each case is a plain async function over `&dyn Store`; [`conformance_suite!`]
//! (crate::conformance_suite) turns the list into one `#[tokio::test]` per case in the calling
//! module, given an expression that yields a fresh [`TestStore`](crate::testing::TestStore) (or
//! `None` to skip). The list is checked against the source: a case that is written but not listed
//! fails the suite (`tests/conformance.rs`).

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

pub mod access;
pub mod audit;
pub mod editions;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod schedules;
pub mod secrets;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenants;
pub mod usage;
pub mod webhooks;

use chrono::Utc;
use serde_json::json;
use tenantry_domain::clock::to_stored_precision;
use tenantry_domain::{
    Actor, AuditId, AuditRecord, EditionKey, EventEnvelope, Isolation, PageRequest, Slug, Tenant,
    TenantId, TenantName,
};

use crate::{AuditFilter, Changes, Store};

pub(crate) fn now() -> chrono::DateTime<Utc> {
    to_stored_precision(Utc::now())
}

pub(crate) fn new_tenant(slug: &str) -> Tenant {
    Tenant::new(
        TenantId::new(),
        Slug::parse(slug).expect("slug"),
        TenantName::parse(&format!("Tenant {slug}")).expect("name"),
        EditionKey::free(),
        None,
        Isolation::Pooled,
        now(),
    )
}

pub(crate) fn changes_for(t: &Tenant, action: &str) -> Changes {
    let audit = AuditRecord {
        id: AuditId::new(),
        occurred_at: now(),
        actor: Actor::system(),
        action: format!("tenant.{action}"),
        resource_type: "tenant".into(),
        resource_id: t.id.to_string(),
        tenant_id: Some(t.id),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        details: json!({"slug": t.slug.as_str()}),
    };
    let event = EventEnvelope::v1(
        &format!("tenant.{action}.v1"),
        t.id.to_string(),
        Some(t.id),
        Some(t.edition.clone()),
        Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        now(),
        json!({"id": t.id}),
    );
    Changes::new(audit, event)
}

/// Every event in the log, after sequencing whatever committed (a relay may run alongside:
/// sequencing is safe to race).
pub async fn logged_events(of: &dyn Store) -> Vec<tenantry_domain::EventEnvelope> {
    while of.events().sequence(10_000).await.expect("sequence") > 0 {}
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &crate::events::LoggedEvent| e.seq);
        let page = of
            .events()
            .read_after(after, 10_000)
            .await
            .expect("read log");
        if page.is_empty() {
            return out.into_iter().map(|e| e.event).collect();
        }
        out.extend(page);
    }
}

pub(crate) async fn audit_count(store: &dyn Store, tenant: TenantId) -> usize {
    let f = AuditFilter {
        tenant_id: Some(tenant),
        ..Default::default()
    };
    store
        .audit()
        .list(&f, PageRequest::first(200))
        .await
        .expect("list audit")
        .items
        .len()
}

/// Generates one `#[tokio::test]` per conformance case of every port, and `LISTED`, the names of
/// them all. `$make` is an async expression yielding `Option<TestStore>`; `None` skips (the
/// PostgreSQL suite without its URL).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@suite $make;
            store: migrations_are_idempotent_and_ready;
            editions: default_editions_are_seeded, custom_editions_are_unique;
            tenants: tenants_round_trip_by_id_and_slug, duplicate_slug_fails_the_whole_unit_of_work,
                updates_are_conditional_on_version, concurrent_updates_let_exactly_one_win,
                tenant_listing_is_stable_paginated_and_filtered;
            audit: audit_and_outbox_commit_with_the_change, a_tenant_reads_only_its_own_audit;
            events: positions_are_contiguous_and_follow_commits, racing_sequencers_and_writers_leave_no_gap,
                a_tenant_reads_only_its_own_log, logs_filter_by_type_subject_and_time,
                cursors_only_move_forward, published_events_are_pruned_per_edition;
            idempotency: idempotency_records_guard_the_write;
            access: api_keys_are_found_by_lookup, tenant_keys_are_fenced_by_scope,
                devices_are_fenced_by_scope;
            jobs: enqueue_claim_complete, concurrent_claims_never_hand_out_a_job_twice,
                expired_leases_are_recovered_and_fenced, retries_back_off_then_die_with_their_history,
                unique_keys_deduplicate_until_finished_plus_window, a_busy_tenant_does_not_starve_another,
                checkpoints_survive_a_retry, cancel_retry_and_replay, tenants_see_only_their_jobs,
                listing_is_newest_first_filtered_and_paginated, release_gives_jobs_back_without_counting,
                scheduled_jobs_wait_for_their_time, jobs_enqueued_in_a_unit_of_work_commit_with_it,
                enqueue_wakes_idle_workers, finished_jobs_are_pruned,
                concurrent_enqueues_commit_each_and_fail_alone, tidying_the_queue_keeps_every_job,
                tenant_caps_bound_running_jobs, queued_jobs_pause_and_resume_with_their_tenant,
                racing_enqueues_of_one_unique_key_add_one_job;
            schedules: schedules_are_fenced_by_scope, firing_is_single_and_enqueues_once,
                leases_have_one_holder, due_skips_schedules_of_inactive_tenants;
            secrets: the_first_secret_stored_wins;
            webhooks: subscription_limits_hold_under_concurrency, the_fan_out_is_idempotent_and_moves_its_cursor,
                claims_keep_per_key_order_and_leases, attempts_are_logged_per_tenant_and_replayed;
            usage: footprints_count_one_tenant;
            telemetry: events_are_stored_once_per_event_id, telemetry_is_fenced_by_scope,
                telemetry_reads_in_recorded_order, telemetry_stats_follow_recorded_time,
                group_commits_keep_each_batch_to_its_tenant, unknown_devices_are_registered_or_refused,
                expired_events_are_exported_and_removed;
            sync: sources_are_fenced_by_scope, pages_upsert_and_complete_runs_reconcile,
                attempts_resume_from_checkpoints_and_are_fenced, quarantined_items_are_kept_per_source,
                manual_runs_queue_once_per_source, a_key_repeated_in_a_page_is_stored_once;
        );
    };
    (@suite $make:expr; $($module:ident: $($case:ident),+);+ $(;)?) => {
        /// Every case this suite runs, as `module::case`.
        pub const LISTED: &[&str] = &[$($(concat!(stringify!($module), "::", stringify!($case))),+),+];
        $($(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                match $make {
                    Some(store) => $crate::conformance::$module::$case(&*store).await,
                    None => $crate::testing::skip_notice(stringify!($case)),
                }
            }
        )+)+
    };
}
