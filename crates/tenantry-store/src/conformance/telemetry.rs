//! Conformance cases of the telemetry port.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use tenantry_domain::telemetry::TelemetryEvent;

use super::access::two_tenants;
use super::now;
use crate::telemetry::{Batch, Inserted, Order, Position, TelemetryFilter, UnknownDevices};
use crate::{Changes, Store};

fn event(id: &str, device: &str, kind: &str, at: DateTime<Utc>, value: f64) -> TelemetryEvent {
    TelemetryEvent {
        event_id: id.into(),
        device_id: device.into(),
        event_type: kind.into(),
        value: Some(value),
        values: BTreeMap::from([("min".to_owned(), value - 1.0)]),
        payload: serde_json::json!({"fw": "1.2"}).as_object().cloned(),
        recorded_at: at,
    }
}

/// Events `e{i}` of device `m1`, one a second from `at`.
fn series(
    ids: std::ops::Range<i64>,
    at: DateTime<Utc>,
    value: impl Fn(i64) -> f64,
) -> Vec<TelemetryEvent> {
    ids.map(|i| {
        event(
            &format!("e{i}"),
            "m1",
            "temp",
            at + Duration::seconds(i),
            value(i),
        )
    })
    .collect()
}

fn device(id: &str) -> TelemetryFilter {
    TelemetryFilter {
        device_id: id.into(),
        ..TelemetryFilter::default()
    }
}

/// `(tenant, event_id)` is stored once: a retried batch, a batch overlapping an earlier one and
/// concurrent writers of the same events all count duplicates, never store twice; every field
/// reads back as written.
pub async fn events_are_stored_once_per_event_id(store: &dyn Store) {
    let (a, _) = two_tenants(store).await;
    let t = store.telemetry();
    let at = now() - Duration::minutes(10);
    let first = series(0..3, at, |i| 20.0 + i as f64);
    let received = now();
    assert_eq!(
        t.insert(&a, &first, received).await.unwrap(),
        Inserted {
            stored: 3,
            duplicates: 0
        }
    );
    assert_eq!(
        t.insert(&a, &first, received).await.unwrap(),
        Inserted {
            stored: 0,
            duplicates: 3
        },
        "a retried batch is all duplicates"
    );
    let mut overlap = first[1..].to_vec();
    overlap.push(event("e3", "m1", "temp", at + Duration::seconds(3), 23.0));
    assert_eq!(
        t.insert(&a, &overlap, received).await.unwrap(),
        Inserted {
            stored: 1,
            duplicates: 2
        }
    );
    // concurrent writers of the same new events: each is stored by exactly one
    let racing = series(10..60, at, |_| 1.0);
    let results = crate::testing::join_all((0..4).map(|_| t.insert(&a, &racing, received))).await;
    let stored: usize = results.iter().map(|r| r.as_ref().unwrap().stored).sum();
    assert_eq!(
        stored,
        racing.len(),
        "every event stored once across writers: {results:?}"
    );
    let all = t.list(&a, &device("m1"), 200, None).await.unwrap();
    assert_eq!(all.len(), 4 + racing.len());
    let e0 = &all[0];
    assert_eq!(e0.event, first[0]);
    assert_eq!(e0.received_at, received);
}

/// One tenant's events are invisible to another, and the same `event_id` in another tenant is
/// another event.
pub async fn telemetry_is_fenced_by_scope(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let t = store.telemetry();
    let e = event("shared-id", "m1", "temp", now() - Duration::minutes(1), 1.0);
    assert_eq!(
        t.insert(&a, std::slice::from_ref(&e), now())
            .await
            .unwrap()
            .stored,
        1
    );
    assert!(
        t.list(&b, &device("m1"), 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.insert(&b, std::slice::from_ref(&e), now())
            .await
            .unwrap()
            .stored,
        1,
        "not a duplicate in another tenant"
    );
    assert_eq!(t.list(&a, &device("m1"), 10, None).await.unwrap().len(), 1);
}

/// Events read back in `recorded_at` order however late they arrived, ties in insertion order,
/// filtered by type and time, and pages that join into the whole list, both ways.
pub async fn telemetry_reads_in_recorded_order(store: &dyn Store) {
    let (a, _) = two_tenants(store).await;
    let t = store.telemetry();
    let base = now() - Duration::hours(1);
    // sent out of order, with two events at the same instant, and another device and type
    let sent = [
        event("late", "m1", "temp", base + Duration::seconds(5), 5.0),
        event("early", "m1", "temp", base + Duration::seconds(1), 1.0),
        event("tie-1", "m1", "temp", base + Duration::seconds(3), 3.0),
        event("tie-2", "m1", "temp", base + Duration::seconds(3), 3.5),
        event("hum", "m1", "humidity", base + Duration::seconds(2), 40.0),
        event("other", "m2", "temp", base + Duration::seconds(2), 9.0),
    ];
    for e in &sent {
        t.insert(&a, std::slice::from_ref(e), now()).await.unwrap();
    }
    let ids = |v: &[crate::telemetry::StoredEvent]| {
        v.iter()
            .map(|e| e.event.event_id.clone())
            .collect::<Vec<_>>()
    };
    let asc = t.list(&a, &device("m1"), 50, None).await.unwrap();
    assert_eq!(ids(&asc), ["early", "hum", "tie-1", "tie-2", "late"]);
    let desc_filter = TelemetryFilter {
        order: Order::Desc,
        ..device("m1")
    };
    let desc = t.list(&a, &desc_filter, 50, None).await.unwrap();
    assert_eq!(ids(&desc), ["late", "tie-2", "tie-1", "hum", "early"]);
    let temps = TelemetryFilter {
        event_type: Some("temp".into()),
        from: Some(base + Duration::seconds(2)),
        to: Some(base + Duration::seconds(5)),
        ..device("m1")
    };
    assert_eq!(
        ids(&t.list(&a, &temps, 50, None).await.unwrap()),
        ["tie-1", "tie-2"]
    );
    // pages of two, through cursors, in both orders
    for (filter, whole) in [(device("m1"), &asc), (desc_filter, &desc)] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = t.list(&a, &filter, 2, after).await.unwrap();
            let more = page.len() > 2;
            let page = &page[..page.len().min(2)];
            seen.extend(ids(page));
            if !more {
                break;
            }
            let last = Position::of(page.last().unwrap());
            after = Position::from_cursor(last.to_cursor());
        }
        assert_eq!(seen, ids(whole));
    }
    // making room for events (partitions) is idempotent
    t.prepare(base - Duration::days(40), now() + Duration::days(70))
        .await
        .unwrap();
    t.prepare(base - Duration::days(40), now() + Duration::days(70))
        .await
        .unwrap();
}

/// Buckets summarise what was recorded in them, late events included: count, min, max, avg and
/// the last recorded value; filters by device and type; empty buckets left out.
pub async fn telemetry_stats_follow_recorded_time(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let t = store.telemetry();
    // a whole hour, well inside every partition the migration made
    let hour = DateTime::from_timestamp((now().timestamp() / 3600 - 2) * 3600, 0).unwrap();
    let m =
        |minutes: i64, seconds: i64| hour + Duration::minutes(minutes) + Duration::seconds(seconds);
    let mut no_value = event("nv", "m1", "temp", m(0, 30), 0.0);
    no_value.value = None;
    let events = [
        event("a", "m1", "temp", m(0, 10), 10.0),
        event("b", "m1", "temp", m(0, 50), 30.0),
        no_value,
        event("c", "m1", "temp", m(2, 0), 5.0),
        event("h", "m1", "humidity", m(0, 20), 99.0),
        event("o", "m2", "temp", m(0, 40), 1000.0),
    ];
    t.insert(&a, &events, now()).await.unwrap();
    // a late event for the first minute, recorded before "b": it is not the last
    t.insert(&a, &[event("late", "m1", "temp", m(0, 45), 20.0)], now())
        .await
        .unwrap();
    let filter = crate::telemetry::StatsFilter {
        from: hour,
        to: hour + Duration::hours(1),
        device_id: Some("m1".into()),
        event_type: Some("temp".into()),
        bucket_seconds: 60,
    };
    let s = t.stats(&a, &filter).await.unwrap();
    assert_eq!(s.len(), 2, "minutes 0 and 2; minute 1 is empty: {s:?}");
    assert_eq!(s[0].start, hour);
    assert_eq!(s[0].count, 4, "three values and one without");
    assert_eq!((s[0].min, s[0].max), (Some(10.0), Some(30.0)));
    assert_eq!(s[0].avg, Some(20.0));
    assert_eq!(
        s[0].last,
        Some(30.0),
        "b was recorded last, though late arrived later"
    );
    assert_eq!(s[1].start, m(2, 0));
    assert_eq!((s[1].count, s[1].last), (1, Some(5.0)));
    // every device and type, one bucket for the hour
    let all = crate::telemetry::StatsFilter {
        device_id: None,
        event_type: None,
        bucket_seconds: 3600,
        ..filter.clone()
    };
    let s = t.stats(&a, &all).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].count, 7);
    assert_eq!(s[0].max, Some(1000.0));
    // another tenant sees none of it
    assert!(t.stats(&b, &all).await.unwrap().is_empty());
}

/// One group commit holds several tenants' batches: each stored under its own tenant, an
/// event id repeated by a later batch of the same tenant counted as its duplicate, the same id
/// in another tenant another event; the outcomes in the batches' order.
pub async fn group_commits_keep_each_batch_to_its_tenant(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let t = store.telemetry();
    let at = now() - Duration::minutes(5);
    let first = series(0..3, at, |i| i as f64);
    let overlap = series(2..5, at, |i| i as f64);
    let theirs = series(0..2, at, |_| 7.0);
    let register = |_: &crate::DeviceRecord| crate::Changes::default();
    let batch = |scope, events| Batch {
        scope,
        events,
        received_at: now(),
        unknown_devices: UnknownDevices::Register(&register),
    };
    let out = t
        .insert_group(&[batch(&a, &first), batch(&b, &theirs), batch(&a, &overlap)])
        .await
        .unwrap();
    let counts: Vec<_> = out.iter().map(|o| o.inserted).collect();
    assert_eq!(
        counts,
        [
            Inserted {
                stored: 3,
                duplicates: 0
            },
            Inserted {
                stored: 2,
                duplicates: 0
            },
            Inserted {
                stored: 2,
                duplicates: 1
            }
        ]
    );
    assert_eq!(out[2].stored_ids, ["e3", "e4"]);
    assert_eq!(
        out[0].registered,
        ["m1"],
        "registered once, by the first batch"
    );
    assert_eq!(out[1].registered, ["m1"], "B's m1 is B's own device");
    assert!(out[2].registered.is_empty());
    assert_eq!(t.list(&a, &device("m1"), 50, None).await.unwrap().len(), 5);
    let b_events = t.list(&b, &device("m1"), 50, None).await.unwrap();
    assert!(b_events.iter().all(|e| e.event.value == Some(7.0)));
    assert_eq!(b_events.len(), 2);
}

/// A device the tenant has not registered: registered with its first events (once, with the
/// changes the caller builds, committed with them), or its events refused and the device named.
pub async fn unknown_devices_are_registered_or_refused(store: &dyn Store) {
    let (a, _) = two_tenants(store).await;
    let t = store.telemetry();
    let at = now() - Duration::minutes(5);
    let refused = [
        event("r1", "stranger", "temp", at, 1.0),
        event("r2", "stranger", "temp", at, 2.0),
    ];
    let out = t
        .insert_group(&[Batch {
            scope: &a,
            events: &refused,
            received_at: now(),
            unknown_devices: UnknownDevices::Reject,
        }])
        .await
        .unwrap();
    assert_eq!(out[0].unknown, ["stranger"]);
    assert_eq!(out[0].inserted, Inserted::default());
    assert!(
        store
            .access()
            .get_device(&a, "stranger")
            .await
            .unwrap()
            .is_none()
    );
    let audits = super::audit_count(store, a.tenant_id()).await;
    let register = |d: &crate::DeviceRecord| {
        let mut c = Changes::default();
        c.audit.push(tenantry_domain::AuditRecord {
            id: tenantry_domain::AuditId::new(),
            occurred_at: d.created_at,
            actor: tenantry_domain::Actor::system(),
            action: "device.register".into(),
            resource_type: "device".into(),
            resource_id: d.device_id.clone(),
            tenant_id: Some(d.tenant_id),
            trace_id: None,
            details: serde_json::json!({}),
        });
        c
    };
    let mut mixed = refused.to_vec();
    mixed.push(event("k1", "newcomer", "temp", at, 3.0));
    let out = t
        .insert_group(&[Batch {
            scope: &a,
            events: &mixed,
            received_at: now(),
            unknown_devices: UnknownDevices::Register(&register),
        }])
        .await
        .unwrap();
    assert_eq!(
        out[0].registered,
        ["newcomer", "stranger"],
        "in one order: sorted"
    );
    assert_eq!(out[0].inserted.stored, 3);
    assert!(out[0].unknown.is_empty());
    assert_eq!(super::audit_count(store, a.tenant_id()).await, audits + 2);
    // now known: refused no more, registered no more
    let out = t
        .insert_group(&[Batch {
            scope: &a,
            events: &[event("r3", "stranger", "temp", at, 4.0)],
            received_at: now(),
            unknown_devices: UnknownDevices::Reject,
        }])
        .await
        .unwrap();
    assert_eq!(
        (
            out[0].inserted.stored,
            out[0].unknown.len(),
            out[0].registered.len()
        ),
        (1, 0, 0)
    );
    let d = store
        .access()
        .get_device(&a, "stranger")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.tenant_id, a.tenant_id());
}

/// Retention's store side: settings round-trip per tenant; a tenant's events before a time are
/// exported in pages (every device, in recorded order), found by `oldest_before`, and removed
/// with their audit in one transaction — its other events and other tenants' untouched; an
/// emptied old month partition is dropped (PostgreSQL) and made again on demand.
pub async fn expired_events_are_exported_and_removed(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let t = store.telemetry();
    assert_eq!(
        t.settings(a.tenant_id()).await.unwrap(),
        crate::telemetry::RetentionSettings::default()
    );
    let held = crate::telemetry::RetentionSettings {
        legal_hold: true,
        archive: Some(false),
    };
    t.put_settings(a.tenant_id(), &held, now(), &Changes::default())
        .await
        .unwrap();
    assert_eq!(t.settings(a.tenant_id()).await.unwrap(), held);
    assert_eq!(
        t.settings(b.tenant_id()).await.unwrap(),
        crate::telemetry::RetentionSettings::default()
    );

    let cutoff = now() - Duration::days(20);
    let mut old = series(0..5, cutoff - Duration::days(3), |i| i as f64);
    old.push(event(
        "other-device",
        "m2",
        "temp",
        cutoff - Duration::days(1),
        9.0,
    ));
    let fresh = series(100..103, cutoff + Duration::hours(1), |i| i as f64);
    t.insert(&a, &old, now()).await.unwrap();
    t.insert(&a, &fresh, now()).await.unwrap();
    t.insert(&b, &old, now()).await.unwrap();
    assert_eq!(
        t.oldest_before(&a, cutoff).await.unwrap(),
        Some(old[0].event_recorded())
    );
    assert_eq!(
        t.oldest_before(&a, cutoff - Duration::days(30))
            .await
            .unwrap(),
        None
    );
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = t
            .export(&a, cutoff - Duration::days(60), cutoff, after, 4)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(Position::of);
        seen.extend(page.into_iter().map(|e| e.event.event_id));
    }
    assert_eq!(seen, ["e0", "e1", "e2", "e3", "e4", "other-device"]);
    let audits = super::audit_count(store, a.tenant_id()).await;
    let tenant = a.tenant_id();
    let removed = t
        .remove_before(&a, cutoff, &move |n| {
            let mut c = Changes::default();
            c.audit.push(tenantry_domain::AuditRecord {
                id: tenantry_domain::AuditId::new(),
                occurred_at: now(),
                actor: tenantry_domain::Actor::system(),
                action: "telemetry.retention".into(),
                resource_type: "telemetry".into(),
                resource_id: tenant.to_string(),
                tenant_id: Some(tenant),
                trace_id: None,
                details: serde_json::json!({ "removed": n }),
            });
            c
        })
        .await
        .unwrap();
    assert_eq!(removed, 6);
    assert_eq!(super::audit_count(store, a.tenant_id()).await, audits + 1);
    assert_eq!(t.list(&a, &device("m1"), 50, None).await.unwrap().len(), 3);
    assert_eq!(t.list(&b, &device("m1"), 50, None).await.unwrap().len(), 5);
    // removed events are gone for good: sent again, they are new (the ids went with them)
    assert_eq!(t.insert(&a, &old[..1], now()).await.unwrap().stored, 1);
    // nothing more to remove: no audit
    let again = t
        .remove_before(&a, cutoff - Duration::days(30), &|_| unreachable!())
        .await;
    assert_eq!(again.unwrap(), 0);

    // an old, empty month is dropped; making room brings it back
    let long_ago: DateTime<Utc> = "2001-01-15T00:00:00Z".parse().unwrap();
    t.prepare(long_ago, long_ago).await.unwrap();
    let dropped = t
        .drop_empty_months("2001-02-01T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    match store.backend() {
        crate::Backend::Postgres => assert!(
            dropped.contains(&chrono::NaiveDate::from_ymd_opt(2001, 1, 1).unwrap()),
            "{dropped:?}"
        ),
        crate::Backend::Sqlite => assert!(dropped.is_empty()),
    }
    t.prepare(long_ago, long_ago).await.unwrap();
    let old_one = event("ancient", "m1", "temp", long_ago, 1.0);
    assert_eq!(t.insert(&b, &[old_one], now()).await.unwrap().stored, 1);
    // a month holding events is kept
    let kept = t
        .drop_empty_months("2001-02-01T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
}

trait Recorded {
    fn event_recorded(&self) -> DateTime<Utc>;
}

impl Recorded for TelemetryEvent {
    fn event_recorded(&self) -> DateTime<Utc> {
        self.recorded_at
    }
}
