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

pub(crate) use sort_out_devices;
