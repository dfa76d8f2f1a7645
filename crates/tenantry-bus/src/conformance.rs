//! The bus conformance suite: every case runs against every adapter
//! ([`bus_conformance_suite!`](crate::bus_conformance_suite)). Each case gets a fresh bus (its
//! own prefix, and on NATS its own stream, deleted afterwards).

#![allow(clippy::unwrap_used)] // test support: a failed expectation is a test failure

use std::time::Duration;

use crate::{Bus, ConsumerOptions, Message};

pub const NATS_URL_VAR: &str = "TENANTRY_TEST_NATS_URL";

/// A unique name for one case's prefix and stream.
pub fn fresh(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("t{}_{nanos}_{n}_{name}", std::process::id())
}

fn message(i: usize, partition: &str, event_type: &str) -> Message {
    Message {
        id: format!("ev-{i:04}"),
        partition: partition.into(),
        event_type: event_type.into(),
        position: i as u64,
        payload: bytes::Bytes::from(format!("{{\"n\":{i}}}")),
    }
}

const WAIT: Duration = Duration::from_secs(5);
const NOTHING: Duration = Duration::from_millis(300);

fn quick() -> ConsumerOptions {
    ConsumerOptions {
        ack_wait: Duration::from_millis(500),
        max_deliver: 3,
    }
}

/// What is published reaches a consumer in publish order (so in order per partition), once
/// acknowledged it does not come again, and a publish of an id already published adds nothing.
pub async fn messages_arrive_in_order_once(bus: &dyn Bus) {
    let sent: Vec<Message> = (0..20)
        .map(|i| {
            message(
                i,
                if i % 2 == 0 { "tenant-a" } else { "tenant-b" },
                "device.created.v1",
            )
        })
        .collect();
    for m in &sent {
        bus.publish(m).await.unwrap();
    }
    // a retried publish of the same event
    bus.publish(&sent[3]).await.unwrap();
    let mut c = bus.consumer("all", ">", quick()).await.unwrap();
    let mut got = Vec::new();
    let mut last_seq = 0;
    for _ in 0..20 {
        let d = c.next(WAIT).await.unwrap().expect("a delivery");
        assert_eq!(d.attempt, 1);
        assert!(d.sequence > last_seq, "sequences increase");
        last_seq = d.sequence;
        got.push(d.message.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(got, sent);
    assert!(c.next(NOTHING).await.unwrap().is_none(), "a duplicate came");
    // published after the consumer exists: delivered too
    bus.publish(&message(99, "tenant-a", "tenant.created.v1"))
        .await
        .unwrap();
    let d = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(d.message.id, "ev-0099");
    d.ack().await.unwrap();
}

/// Filters select by partition (tenant) and type with NATS wildcards.
pub async fn filters_select_tenants_and_types(bus: &dyn Bus) {
    bus.publish(&message(1, "tenant-a", "device.created.v1"))
        .await
        .unwrap();
    bus.publish(&message(2, "tenant-b", "device.created.v1"))
        .await
        .unwrap();
    bus.publish(&message(3, "tenant-a", "tenant.suspended.v1"))
        .await
        .unwrap();
    for (name, filter, want) in [
        ("a-only", "tenant-a.>", vec!["ev-0001", "ev-0003"]),
        ("devices", "*.device.>", vec!["ev-0001", "ev-0002"]),
        ("exact", "tenant-b.device.created.v1", vec!["ev-0002"]),
    ] {
        let mut c = bus.consumer(name, filter, quick()).await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = c.next(NOTHING * 2).await.unwrap() {
            got.push(d.message.id.clone());
            d.ack().await.unwrap();
        }
        assert_eq!(got, want, "{filter}");
    }
}

/// A delivery not acknowledged within the ack wait comes again, with its attempt count; a nak
/// brings it back after its delay; after the last allowed delivery it comes no more.
pub async fn unacknowledged_messages_are_redelivered_up_to_the_bound(bus: &dyn Bus) {
    bus.publish(&message(1, "tenant-a", "device.created.v1"))
        .await
        .unwrap();
    let mut c = bus.consumer("redeliver", ">", quick()).await.unwrap();
    let first = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    drop(first); // neither acked nor nak'd: the ack wait runs out
    let second = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!((second.attempt, second.message.id.as_str()), (2, "ev-0001"));
    second.nak(Duration::from_millis(50)).await.unwrap();
    let third = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(third.attempt, 3);
    drop(third);
    assert!(
        c.next(Duration::from_millis(1200)).await.unwrap().is_none(),
        "delivered past max_deliver"
    );
}

/// A consumer that stops and starts again (same name) continues after what it acknowledged;
/// what it had not acknowledged comes again.
pub async fn a_restarted_consumer_continues_where_it_stopped(bus: &dyn Bus) {
    for i in 0..10 {
        bus.publish(&message(i, "tenant-a", "device.created.v1"))
            .await
            .unwrap();
    }
    let options = ConsumerOptions {
        ack_wait: Duration::from_millis(800),
        max_deliver: 5,
    };
    {
        let mut c = bus.consumer("durable", ">", options).await.unwrap();
        for i in 0..5 {
            let d = c.next(WAIT).await.unwrap().unwrap();
            assert_eq!(d.message.id, format!("ev-{i:04}"));
            d.ack().await.unwrap();
        }
        // the sixth is taken but not acknowledged when the consumer goes away
        let d = c.next(WAIT).await.unwrap().unwrap();
        assert_eq!(d.message.id, "ev-0005");
    }
    let mut again = bus.consumer("durable", ">", options).await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = again.next(Duration::from_secs(3)).await.unwrap() {
        got.push(d.message.id.clone());
        d.ack().await.unwrap();
        if got.len() == 5 {
            break;
        }
    }
    got.sort();
    let want: Vec<String> = (5..10).map(|i| format!("ev-{i:04}")).collect();
    assert_eq!(got, want);
}

/// A tail gets, in publish order, what matches its filter and is published after it starts —
/// pipelined batches included, each message with its position.
pub async fn a_tail_reads_what_is_published_after_it(bus: &dyn Bus) {
    bus.publish(&message(1, "tenant-a", "device.created.v1"))
        .await
        .unwrap();
    let mut all = bus.tail(">").await.unwrap();
    let mut only_b = bus.tail("tenant-b.>").await.unwrap();
    let batch: Vec<Message> = (2..40)
        .map(|i| message(i, if i % 3 == 0 { "tenant-b" } else { "tenant-a" }, "x.v1"))
        .collect();
    bus.publish_all(&batch).await.unwrap();
    bus.publish_all(&batch[..5]).await.unwrap(); // a retried batch adds nothing
    let mut got = Vec::new();
    while got.len() < batch.len() {
        let d = all.next(WAIT).await.unwrap().expect("a message");
        got.push(d.message.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(
        got, batch,
        "in order, with positions, nothing from before the tail"
    );
    assert!(
        all.next(NOTHING).await.unwrap().is_none(),
        "a duplicate came"
    );
    let mut b = Vec::new();
    while let Some(d) = only_b.next(NOTHING * 2).await.unwrap() {
        b.push(d.message.position);
    }
    let want: Vec<u64> = (2..40).filter(|i| i % 3 == 0).collect();
    assert_eq!(b, want);
}

/// Every case of the suite as a `#[tokio::test]` in the calling module, given an expression
/// that yields `Option<(bus, cleanup future)>` (`None` skips).
#[macro_export]
macro_rules! bus_conformance_suite {
    ($make:expr) => {
        $crate::bus_conformance_suite!(@cases $make;
            messages_arrive_in_order_once, filters_select_tenants_and_types,
            unacknowledged_messages_are_redelivered_up_to_the_bound,
            a_restarted_consumer_continues_where_it_stopped,
            a_tail_reads_what_is_published_after_it);
    };
    (@cases $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                match $make {
                    Some(bus) => {
                        $crate::conformance::$case(&*bus).await;
                        cleanup(bus).await;
                    }
                    None => eprintln!("skipped: {} (no NATS server)", stringify!($case)),
                }
            }
        )+
    };
}
