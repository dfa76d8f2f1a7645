//! HTTP integration tests: the real server on a loopback port, against SQLite and (when
//! `TENANTRY_TEST_POSTGRES_URL` is set) PostgreSQL. Each case gets its own fresh store.

#![allow(clippy::unwrap_used)]

mod access;
mod audit;
mod contract;
mod cross_tenant;
mod editions;
mod errors;
mod events;
mod hardening;
mod hostile;
mod idempotency;
mod jobs;
mod limits;
mod observability;
mod support;
mod sync;
mod telemetry;
mod tenants;
mod tokens;
mod transport;
mod webhooks;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_get_408_and_idle_connections_close() {
    transport::slow_heads_and_bodies_get_408_and_idle_connections_close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_bound_get_503() {
    transport::connections_past_the_bound_get_503().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_get_problems() {
    transport::requests_hyper_cannot_parse_get_problems().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_written_before_reading_gets_its_413() {
    transport::an_oversized_body_written_before_reading_gets_its_413().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_hostile_requests_to_every_route_are_refused_cleanly() {
    let store = tenantry_store::testing::sqlite().await;
    let srv = tenantry_server::testing::TestServer::start(store, hostile::tweak).await;
    hostile::hostile_requests_to_every_route_are_refused_cleanly(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hostile_requests_to_every_route_are_refused_cleanly() {
    let Some(store) = tenantry_store::testing::postgres().await else {
        return tenantry_store::testing::skip_notice(
            "hostile_requests_to_every_route_are_refused_cleanly",
        );
    };
    let srv = tenantry_server::testing::TestServer::start(store, hostile::tweak).await;
    hostile::hostile_requests_to_every_route_are_refused_cleanly(&srv).await;
}

#[test]
fn slo_rules_and_dashboard_are_valid() {
    observability::slo_rules_and_dashboard_are_valid();
}

#[test]
fn the_metrics_catalog_matches_the_source_and_the_docs() {
    observability::the_metrics_catalog_matches_the_source_and_the_docs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics() {
    observability::promtool_accepts_the_live_metrics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_authenticate_and_resolve_their_tenant() {
    tokens::hs256_tokens_authenticate_and_resolve_their_tenant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_are_401_with_a_reason() {
    tokens::invalid_tokens_are_401_with_a_reason().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refused_when_no_method_is_configured() {
    tokens::tokens_are_refused_when_no_method_is_configured().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_verify_rs256_es256_and_eddsa_and_refresh_on_unknown_kid() {
    tokens::jwks_keys_verify_rs256_es256_and_eddsa_and_refresh_on_unknown_kid().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default_and_answers_allowed_origins() {
    hardening::cors_is_off_by_default_and_answers_allowed_origins().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    errors::oversized_bodies_are_413().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_applies_to_everyone() {
    limits::the_global_limit_applies_to_everyone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cap_bounds_running_jobs() {
    jobs::a_tenant_cap_bounds_running_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_limits_through_redis() {
    limits::instances_share_limits_through_redis().await;
}

/// Generates `sqlite::<case>` and `postgres::<case>` tests for each listed `module::case`.
/// Source sync's cases: on a server whose egress allows the loopback fixture.
macro_rules! sync_on_every_backend {
    ($($case:ident),+ $(,)?) => {
        mod sync_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = tenantry_store::testing::sqlite().await;
                    let srv = tenantry_server::testing::TestServer::start(store, crate::sync::tweak).await;
                    crate::sync::$case(&srv).await;
                }
            )+
        }
        mod sync_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(store) = tenantry_store::testing::postgres().await else {
                        return tenantry_store::testing::skip_notice(stringify!($case));
                    };
                    let srv = tenantry_server::testing::TestServer::start(store, crate::sync::tweak).await;
                    crate::sync::$case(&srv).await;
                }
            )+
        }
    };
}

sync_on_every_backend!(
    sources_are_validated_sealed_and_scheduled,
    runs_pull_every_page_and_reconcile,
    bad_data_is_contained_and_failing_sources_dead_letter,
    a_source_has_one_pending_run_at_a_time,
    a_failing_tenant_does_not_hold_up_the_others,
    two_instances_never_run_one_source_at_once,
);

/// Webhooks' cases: on a server whose egress and scheme rules admit the loopback receiver.
macro_rules! webhooks_on_every_backend {
    ($tweak:path: $($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let store = tenantry_store::testing::sqlite().await;
                    let srv = tenantry_server::testing::TestServer::start(store, $tweak).await;
                    crate::webhooks::$case(&srv).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(store) = tenantry_store::testing::postgres().await else {
                        return tenantry_store::testing::skip_notice(stringify!($case));
                    };
                    let srv = tenantry_server::testing::TestServer::start(store, $tweak).await;
                    crate::webhooks::$case(&srv).await;
                }
            }
        )+
    };
}

webhooks_on_every_backend!(crate::webhooks::tweak:
    subscriptions_deliver_signed_filtered_events,
    failures_retry_honour_retry_after_and_gone_disables,
    rotation_signs_with_both_secrets,
    per_key_order_holds_under_failures,
    replay_redelivers_with_the_same_id,
    a_subscription_failing_for_days_is_disabled,
);
webhooks_on_every_backend!(crate::webhooks::guarded_tweak: internal_destinations_are_refused_on_write);

macro_rules! on_every_backend {
    ($($module:ident :: $case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let srv = tenantry_server::testing::TestServer::sqlite().await;
                    crate::$module::$case(&srv).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    match tenantry_server::testing::TestServer::postgres().await {
                        Some(srv) => crate::$module::$case(&srv).await,
                        None => tenantry_store::testing::skip_notice(stringify!($case)),
                    }
                }
            )+
        }
    };
}

on_every_backend!(
    jobs::jobs_run_retry_and_die,
    jobs::a_busy_tenant_does_not_starve_a_small_one,
    jobs::running_jobs_can_be_cancelled,
    jobs::enqueue_validates_batches_and_deduplicates,
    jobs::tenants_see_and_touch_only_their_jobs,
    jobs::interval_schedules_fire_at_once_and_then_on_time,
    tenants::create_returns_201_with_location_etag_and_body,
    tenants::slugs_are_derived_and_unique,
    tenants::get_by_id_or_slug,
    tenants::list_is_cursor_paginated_and_filtered,
    tenants::patch_requires_current_etag,
    tenants::lifecycle_transitions,
    tenants::restore_after_the_grace_window_is_refused,
    editions::default_catalog,
    editions::custom_editions,
    audit::every_write_is_audited_with_an_event,
    audit::audit_filters_and_pagination,
    idempotency::same_key_same_body_replays,
    idempotency::same_key_other_body_is_refused,
    idempotency::concurrent_retries_create_one_tenant,
    idempotency::lifecycle_operations_are_idempotent,
    idempotency::every_write_honours_idempotency_keys,
    idempotency::job_replay_refuses_idempotency_keys,
    errors::authentication_errors,
    errors::routing_errors,
    errors::body_errors,
    errors::query_errors,
    errors::store_outage_is_503,
    observability::trace_context_and_request_id_are_honoured,
    observability::health_readiness_and_metrics,
    observability::per_tenant_metrics_are_opt_in,
    observability::the_openapi_document_covers_every_route,
    contract::schemathesis_finds_nothing,
    access::tenant_keys_create_list_rotate_revoke,
    access::scopes_are_enforced_and_cannot_be_escalated,
    access::tenant_resolution_sources,
    access::suspended_tenants_read_but_do_not_write,
    access::devices_register_with_their_own_keys,
    access::key_and_device_changes_are_audited,
    access::revocation_and_rotation_across_two_instances,
    cross_tenant::no_route_lets_tenant_b_touch_tenant_a,
    telemetry::events_are_ingested_once_and_read_back_in_order,
    telemetry::device_keys_write_only_their_own_device,
    telemetry::bad_batches_are_refused_whole,
    telemetry::stats_summarise_buckets,
    telemetry::ingestion_past_its_budget_is_503_and_stores_nothing,
    telemetry::unknown_devices_are_registered_or_refused,
    telemetry::the_live_stream_carries_only_the_callers_events,
    telemetry::concurrent_requests_share_commits_and_count_exactly,
    telemetry::retention_archives_removes_restores_and_spares_held_tenants,
    telemetry::retention_runs_as_a_scheduled_job,
    sync::the_egress_guard_refuses_internal_upstreams,
    hardening::nul_bytes_are_refused_everywhere,
    hardening::duplicate_security_headers_are_refused,
    hardening::slugs_are_dns_labels,
    hardening::scope_lists_are_normalised_and_bounded,
    hardening::replay_needs_no_body,
    hardening::job_payloads_are_checked_at_enqueue,
    hardening::manage_scopes_imply_read,
    hardening::schedules_pause_with_their_tenant,
    hardening::readiness_names_the_optional_backends,
    hardening::tenants_read_their_own_tenant_audit_and_editions,
    hardening::schedules_are_bounded_by_the_edition_and_fire_on_whole_seconds,
    hardening::unpaginated_lists_refuse_parameters_and_405_names_the_method,
    hardening::names_refuse_bidi_overrides,
    hardening::a_key_limit_cannot_exceed_its_edition,
    hardening::cursors_are_tamper_evident_and_bound_to_their_list,
    hardening::queued_jobs_pause_with_their_tenant,
    hardening::error_messages_use_the_api_s_words,
    limits::headers_then_429_after_the_burst,
    limits::limits_are_per_tenant_and_per_key,
    limits::edition_changes_apply_without_restart,
    events::the_log_serves_each_tenant_its_own_cloud_events,
    events::streams_deliver_live_and_resume_exactly,
);

/// Cases over NATS JetStream, on PostgreSQL when its URL is given (SQLite otherwise).
async fn events_store() -> tenantry_store::testing::TestStore {
    match tenantry_store::testing::postgres().await {
        Some(s) => s,
        None => tenantry_store::testing::sqlite().await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_streams_over_nats() {
    events::two_instances_share_streams_over_nats(events_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_outage_loses_nothing() {
    events::a_bus_outage_loses_nothing(events_store().await).await;
}
