//! Telemetry's device step, the same on both backends: of a batch's devices, those the tenant
//! has not registered are registered (with the changes the caller builds, in the batch's
//! transaction) or their events refused. The rest of telemetry's Rust is per backend (ADR 0017).

/// Expands to `(Outcome, Vec<&TelemetryEvent>)`: the outcome so far (devices registered or
/// refused) and the events to store. `$known` is the set of the batch's devices the tenant has;
/// `$register` the adapter's `INSERT … ON CONFLICT DO NOTHING` of a device; `$store` the
/// adapter type (its `write_changes`).
macro_rules! sort_out_devices {
    ($tx:expr, $b:expr, $devices:expr, $known:expr, $register:expr, $store:ty) => {{
        let (tx, b) = ($tx, $b);
        let known: std::collections::HashSet<String> = $known;
        let mut outcome = $crate::telemetry::Outcome::default();
        // sorted: concurrent registrations take their row locks in one order (no deadlock)
        let mut unknown: Vec<String> = $devices
            .into_iter()
            .filter(|d| !known.contains(d))
            .collect();
        unknown.sort_unstable();
        let kept: Vec<&tenantry_domain::telemetry::TelemetryEvent> = match b.unknown_devices {
            $crate::telemetry::UnknownDevices::Register(changes) => {
                for device_id in unknown {
                    let d =
                        $crate::telemetry::first_seen_device(b.scope, &device_id, b.received_at);
                    let done = $crate::sql::binds::bind_device!(sqlx::query($register), &d)
                        .execute(&mut **tx)
                        .await
                        .map_err(err)?;
                    // another writer registered it first: its changes are that writer's
                    if done.rows_affected() == 1 {
                        <$store>::write_changes(tx, &changes(&d)).await?;
                        outcome.registered.push(device_id);
                    }
                }
                b.events.iter().collect()
            }
            $crate::telemetry::UnknownDevices::Reject => {
                let kept = b
                    .events
                    .iter()
                    .filter(|e| !unknown.contains(&e.device_id))
                    .collect();
                outcome.unknown = unknown;
                kept
            }
        };
        (outcome, kept)
    }};
}

/// `settings` and `put_settings` of `TelemetryStore` as free functions of the adapter `$store`
/// (its trait methods call them; `#[async_trait]` cannot see methods a macro makes): the SQL is
/// the adapter's `sql::SETTINGS` (select by tenant) and `sql::PUT_SETTINGS` (upsert of tenant,
/// hold, archive, updated at).
macro_rules! retention_settings {
    ($store:ty) => {
        async fn settings(
            this: &$store,
            tenant: tenantry_domain::TenantId,
        ) -> $crate::StoreResult<$crate::telemetry::RetentionSettings> {
            let _timed = $crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.settings");
            let mut tx = this.platform_tx(Intent::Read).await?;
            let row: Option<(bool, Option<bool>)> = sqlx::query_as(sql::SETTINGS)
                .bind(tenant.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await?;
            Ok(row.map_or_else(Default::default, |(legal_hold, archive)| {
                $crate::telemetry::RetentionSettings {
                    legal_hold,
                    archive,
                }
            }))
        }

        async fn put_settings(
            this: &$store,
            tenant: tenantry_domain::TenantId,
            settings: &$crate::telemetry::RetentionSettings,
            at: chrono::DateTime<chrono::Utc>,
            changes: &$crate::Changes,
        ) -> $crate::StoreResult<()> {
            let _timed =
                $crate::sql::timing::Timed::new(super::DB_SYSTEM, "telemetry.put_settings");
            let mut tx = this.platform_tx(Intent::Write).await?;
            <$store>::write_changes(&mut tx, changes).await?;
            sqlx::query(sql::PUT_SETTINGS)
                .bind(tenant.as_uuid())
                .bind(settings.legal_hold)
                .bind(settings.archive)
                .bind(db_time(at))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await
        }
    };
}

pub(crate) use {retention_settings, sort_out_devices};
