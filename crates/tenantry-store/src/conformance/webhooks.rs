//! Conformance cases: webhooks — the subscription limit holds under concurrency, the fan-out is
//! idempotent and moves its cursor with its messages, claims honour per-key order and leases,
//! attempts are recorded and listed per tenant, replays reschedule.

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use std::sync::Arc;

use chrono::Duration;
use tenantry_domain::webhook::{DeliveryPolicy, Ordering};
use tenantry_domain::{PageRequest, Tenant, TenantScope};
use uuid::Uuid;

use super::{changes_for, new_tenant, now};
use crate::Store;
use crate::webhooks::{
    AttemptFilter, AttemptOutcome, AttemptResult, Claim, Created, MessageFilter, NewMessage,
    SubscriptionRecord,
};

fn scope(t: &Tenant) -> TenantScope {
    TenantScope::system(t.id, t.edition.clone(), "webhooks conformance test")
}

fn subscription(t: &Tenant, ordering: Ordering) -> SubscriptionRecord {
    SubscriptionRecord {
        id: Uuid::now_v7(),
        tenant_id: t.id,
        url: "https://hooks.example.com/in".into(),
        event_types: vec!["device.*".into()],
        filter: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        policy: DeliveryPolicy::default(),
        rate_limit_per_minute: None,
        ordering,
        secrets: vec![crate::webhooks::SealedSecret {
            sealed: "sealed".into(),
            created_at: now(),
            expires_at: None,
        }],
        failing_since: None,
        created_at: now(),
        updated_at: now(),
    }
}

async fn tenant(store: &dyn Store, slug: &str) -> Tenant {
    let t = new_tenant(slug);
    store
        .tenants()
        .insert(&t, &changes_for(&t, "created"))
        .await
        .unwrap();
    t
}

fn message(s: &SubscriptionRecord, seq: i64, key: &str) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        tenant_id: s.tenant_id,
        subscription_id: s.id,
        event_id: Uuid::now_v7(),
        event_seq: seq,
        event_type: "device.registered.v1".into(),
        partition_key: key.into(),
        body: format!("{{\"seq\":{seq}}}"),
        trace_parent: None,
        at: now(),
    }
}

fn result(m: &crate::webhooks::ClaimedMessage, outcome: AttemptOutcome) -> AttemptResult {
    AttemptResult {
        id: Uuid::now_v7(),
        message_id: m.id,
        tenant_id: m.tenant_id,
        subscription_id: m.subscription_id,
        event_type: m.event_type.clone(),
        attempt: m.attempt,
        outcome,
        status_code: Some(if outcome == AttemptOutcome::Delivered {
            204
        } else {
            500
        }),
        latency_ms: 3,
        response: Some("ok".into()),
        error: None,
        at: now(),
        next_attempt_at: (outcome == AttemptOutcome::Failed).then(now),
    }
}

pub async fn subscription_limits_hold_under_concurrency(store: &dyn Store) {
    let t = tenant(store, "wh-limit").await;
    let store: Arc<&dyn Store> = Arc::new(store);
    let attempts = (0..6).map(|_| {
        let s = subscription(&t, Ordering::None);
        let t = t.clone();
        let store = Arc::clone(&store);
        async move {
            store
                .webhooks()
                .create_subscription(&scope(&t), &s, 3, &changes_for(&t, "webhook"))
                .await
                .unwrap()
        }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let created = outcomes.iter().filter(|o| **o == Created::Created).count();
    assert_eq!(created, 3, "{outcomes:?}");
    assert!(outcomes.contains(&Created::AtLimit { used: 3 }));
    let listed = store
        .webhooks()
        .list_subscriptions(&scope(&t))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    // another tenant sees none of them, and cannot read one by id
    let other = tenant(*store, "wh-limit-other").await;
    assert!(
        store
            .webhooks()
            .list_subscriptions(&scope(&other))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .webhooks()
            .get_subscription(&scope(&other), listed[0].id)
            .await
            .unwrap()
            .is_none()
    );
    // updates are conditional on the version read
    let mut s = listed[0].clone();
    let read_at = s.updated_at;
    s.url = "https://hooks.example.com/v2".into();
    s.updated_at = read_at + Duration::milliseconds(1);
    let w = store.webhooks();
    w.update_subscription(&scope(&t), &s, read_at, &changes_for(&t, "webhook"))
        .await
        .unwrap();
    let again = w
        .update_subscription(&scope(&t), &s, read_at, &changes_for(&t, "webhook"))
        .await;
    assert!(
        matches!(again, Err(crate::StoreError::VersionConflict)),
        "{again:?}"
    );
    assert_eq!(
        w.get_subscription(&scope(&t), s.id)
            .await
            .unwrap()
            .unwrap()
            .url,
        "https://hooks.example.com/v2"
    );
    assert!(
        w.delete_subscription(&scope(&t), s.id, &changes_for(&t, "webhook"))
            .await
            .unwrap()
    );
    assert!(
        !w.delete_subscription(&scope(&t), s.id, &changes_for(&t, "webhook"))
            .await
            .unwrap()
    );
}

pub async fn the_fan_out_is_idempotent_and_moves_its_cursor(store: &dyn Store) {
    let t = tenant(store, "wh-fan").await;
    let w = store.webhooks();
    let s = subscription(&t, Ordering::None);
    w.create_subscription(&scope(&t), &s, 5, &changes_for(&t, "webhook"))
        .await
        .unwrap();
    let batch: Vec<NewMessage> = (1..=3).map(|i| message(&s, i, "k")).collect();
    w.fan_out("webhooks-test", 3, &batch, now()).await.unwrap();
    // the same events again (a crash before the cursor moved): nothing new
    let mut again = batch.clone();
    for m in &mut again {
        m.id = Uuid::now_v7();
    }
    w.fan_out("webhooks-test", 3, &again, now()).await.unwrap();
    assert_eq!(store.events().cursor("webhooks-test").await.unwrap(), 3);
    assert_eq!(w.stats().await.unwrap().pending, 3);
    // a message for a subscription deleted meanwhile is skipped, not an error
    let mut gone = message(&s, 4, "k");
    gone.subscription_id = Uuid::now_v7();
    w.fan_out("webhooks-test", 4, &[gone], now()).await.unwrap();
    assert_eq!(w.stats().await.unwrap().pending, 3);
    let claimed = w
        .claim(
            &[Claim {
                subscription_id: s.id,
                take: 10,
                per_key: false,
            }],
            now(),
            now() + Duration::seconds(60),
        )
        .await
        .unwrap();
    let mut bodies: Vec<&str> = claimed.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["{\"seq\":1}", "{\"seq\":2}", "{\"seq\":3}"]);
}

pub async fn claims_keep_per_key_order_and_leases(store: &dyn Store) {
    let t = tenant(store, "wh-claim").await;
    let w = store.webhooks();
    let keyed = subscription(&t, Ordering::PerKey);
    let free = subscription(&t, Ordering::None);
    for s in [&keyed, &free] {
        w.create_subscription(&scope(&t), s, 5, &changes_for(&t, "webhook"))
            .await
            .unwrap();
    }
    let mut batch = Vec::new();
    for (i, key) in ["a", "a", "b", "a"].iter().enumerate() {
        batch.push(message(&keyed, i as i64 + 1, key));
        batch.push(message(&free, i as i64 + 1, key));
    }
    w.fan_out("webhooks-claims", 4, &batch, now())
        .await
        .unwrap();
    let claims = |take| {
        [
            Claim {
                subscription_id: keyed.id,
                take,
                per_key: true,
            },
            Claim {
                subscription_id: free.id,
                take,
                per_key: false,
            },
        ]
    };
    let lease = now() + Duration::seconds(60);
    let first = w.claim(&claims(10), now(), lease).await.unwrap();
    let of = |s: &SubscriptionRecord, c: &[crate::webhooks::ClaimedMessage]| {
        let mut v: Vec<String> = c
            .iter()
            .filter(|m| m.subscription_id == s.id)
            .map(|m| format!("{}{}", m.partition_key, m.body))
            .collect();
        v.sort();
        v
    };
    // per key: the oldest of each key only; unordered: all four
    assert_eq!(of(&keyed, &first), ["a{\"seq\":1}", "b{\"seq\":3}"]);
    assert_eq!(of(&free, &first).len(), 4);
    assert!(first.iter().all(|m| m.attempt == 1));
    // leased: nothing more until an attempt is recorded
    assert!(w.claim(&claims(10), now(), lease).await.unwrap().is_empty());
    // a failure keeps the key held (the failed message is due again, before its successors)
    let a1 = first
        .iter()
        .find(|m| m.subscription_id == keyed.id && m.partition_key == "a")
        .unwrap();
    w.record(&[result(a1, AttemptOutcome::Failed)])
        .await
        .unwrap();
    let retry = w
        .claim(&claims(10), now() + Duration::milliseconds(1), lease)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].id, retry[0].attempt), (a1.id, 2));
    // delivered: the key's next message comes
    w.record(&[result(&retry[0], AttemptOutcome::Delivered)])
        .await
        .unwrap();
    let next = w
        .claim(&claims(10), now() + Duration::milliseconds(2), lease)
        .await
        .unwrap();
    assert_eq!(of(&keyed, &next), ["a{\"seq\":2}"]);
    // a claim whose lease ran out is claimed again (the dispatcher died mid-flight)
    let expired = w
        .claim(
            &claims(10),
            lease + Duration::seconds(1),
            lease + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert!(
        expired
            .iter()
            .any(|m| m.subscription_id == free.id && m.attempt == 2)
    );
}

pub async fn attempts_are_logged_per_tenant_and_replayed(store: &dyn Store) {
    let t = tenant(store, "wh-log").await;
    let other = tenant(store, "wh-log-other").await;
    let w = store.webhooks();
    let s = subscription(&t, Ordering::None);
    w.create_subscription(&scope(&t), &s, 5, &changes_for(&t, "webhook"))
        .await
        .unwrap();
    let start = now() - Duration::seconds(1);
    let batch: Vec<NewMessage> = (1..=3).map(|i| message(&s, i, "k")).collect();
    w.enqueue(&scope(&t), &batch).await.unwrap();
    let claim = [Claim {
        subscription_id: s.id,
        take: 10,
        per_key: false,
    }];
    let claimed = w
        .claim(&claim, now(), now() + Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let outcomes = [
        AttemptOutcome::Delivered,
        AttemptOutcome::Dead,
        AttemptOutcome::Delivered,
    ];
    let results: Vec<AttemptResult> = claimed
        .iter()
        .zip(outcomes)
        .map(|(m, o)| result(m, o))
        .collect();
    w.record(&results).await.unwrap();
    assert_eq!(
        w.stats().await.unwrap(),
        crate::webhooks::WebhookStats {
            pending: 0,
            dead: 1
        }
    );
    let all = w
        .list_attempts(&scope(&t), &AttemptFilter::default(), PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    assert!(all.page_info.has_next_page);
    assert!(all.items[0].id > all.items[1].id, "newest first");
    let dead = w
        .list_attempts(
            &scope(&t),
            &AttemptFilter {
                outcome: Some(AttemptOutcome::Dead),
                subscription_id: Some(s.id),
                ..AttemptFilter::default()
            },
            PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].status_code, Some(500));
    assert!(
        w.list_attempts(
            &scope(&other),
            &AttemptFilter::default(),
            PageRequest::first(10)
        )
        .await
        .unwrap()
        .items
        .is_empty()
    );
    // replay: the dead one, same id, attempts from 1 again
    let filter = MessageFilter {
        subscription_id: s.id,
        from: start,
        to: now() + Duration::seconds(1),
        status: Some("dead".into()),
    };
    let found = w.messages(&scope(&t), &filter, 100).await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        w.messages(&scope(&other), &filter, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let due = [(found[0].id, now())];
    assert_eq!(w.reschedule(&scope(&other), &due, now()).await.unwrap(), 0);
    assert_eq!(w.reschedule(&scope(&t), &due, now()).await.unwrap(), 1);
    let again = w
        .claim(
            &claim,
            now() + Duration::milliseconds(1),
            now() + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (found[0].id, 1));
    // pruning takes finished messages and attempts past the retention, of that edition only
    let n = w
        .prune("free", now() + Duration::seconds(5), 1000)
        .await
        .unwrap();
    assert_eq!(n, 3 + 2, "three attempts and the two delivered messages");
    assert_eq!(
        w.prune("enterprise", now() + Duration::seconds(5), 1000)
            .await
            .unwrap(),
        0
    );
}
