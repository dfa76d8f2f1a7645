//! The relay: publishes the event log to the bus, at least once, in log order (so in commit
//! order per partition key — in fact in one total order; batches are pipelined, which is where
//! the throughput comes from). One relay runs at a time among every process with the worker role
//! (the `event-relay` lease): no double publishing in steady state, and a take-over resumes from
//! the saved cursor. It is woken by the store's event signal (in-process, or PostgreSQL's
//! `LISTEN/NOTIFY` from any instance) and looks anyway every `[events] relay_poll_ms`.
//!
//! While the bus is unreachable, writes go on (the outbox is only read here), the backlog grows
//! (`events_relay_backlog`, `/readyz`), and the relay retries with backoff; when the bus answers
//! again the backlog is published from the cursor, without a restart. A batch published but
//! not recorded (a crash between the two) is published again: the bus drops what it already
//! has by event id (JetStream's duplicate window), and readers order by position.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use tenantry_bus::{Bus, Message};
use tenantry_domain::event::PLATFORM_PARTITION;
use tenantry_store::Store;
use tenantry_store::events::LoggedEvent;
use tokio::sync::watch;

use super::runtime::{EventsRuntime, source};
use crate::jobs::workers::scheduler::WorkerLease;
use crate::observability::traces;
use crate::platform::now;

/// The relay's saved position.
pub const RELAY_CURSOR: &str = "relay";
/// The lease naming the one relay.
pub const RELAY_LEASE: &str = "event-relay";
const LEASE_TTL: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// The bus message of a logged event: its CloudEvent, with its position.
pub fn message(e: &LoggedEvent) -> Message {
    let ce = e.event.to_logged_cloud_event(source(), e.seq);
    Message {
        id: ce.id.clone(),
        partition: ce
            .tenantid
            .clone()
            .unwrap_or_else(|| PLATFORM_PARTITION.to_owned()),
        event_type: e.event.event_type.clone(),
        position: u64::try_from(e.seq).unwrap_or(0),
        payload: serde_json::to_vec(&ce).unwrap_or_default().into(),
    }
}

/// Runs the relay until `stop`, as `owner`.
pub async fn run(
    store: Arc<dyn Store>,
    rt: Arc<EventsRuntime>,
    owner: String,
    mut stop: watch::Receiver<bool>,
) {
    let signal = store.events().event_signal();
    let mut lease = WorkerLease::new(Arc::clone(&store), RELAY_LEASE, owner, LEASE_TTL);
    let poll = Duration::from_millis(u64::from(rt.config().relay_poll_ms));
    let batch = rt.config().relay_batch;
    let mut renewed: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let mut cursor: Option<i64> = None;
    let mut stats_at: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if renewed.is_none_or(|r| r.elapsed() >= RENEW_EVERY) {
            let held = lease.hold().await;
            renewed = Some(Instant::now());
            rt.update_relay(|s| s.leading = held);
            if !held {
                cursor = None; // another relay moves it
                wait(&mut stop, notified, RENEW_EVERY).await;
                continue;
            }
        }
        let outcome = match rt.bus().await {
            Ok(bus) => relay_once(&*store, &*bus, batch, &mut cursor).await,
            Err(e) => Err(format!("bus: {e}")),
        };
        if stats_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            stats_at = Some(Instant::now());
            report_backlog(&*store, &rt, cursor).await;
        }
        match outcome {
            Ok(n) if n > 0 => {
                backoff = Duration::from_millis(100);
                rt.update_relay(|s| s.error = None);
            }
            Ok(_) => {
                rt.update_relay(|s| s.error = None);
                wait(&mut stop, notified, poll).await;
            }
            Err(e) => {
                metrics::counter!("events_relay_errors_total").increment(1);
                let first = rt.relay_status().error.is_none();
                if first {
                    tracing::warn!(error = %e, "event relay: cannot publish; retrying (writes go on, the outbox grows)");
                }
                rt.update_relay(|s| s.error = Some((e, chrono::Utc::now())));
                cursor = None; // re-read the saved position: nothing is assumed published
                wait(&mut stop, std::future::pending::<()>(), backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    lease.release().await;
    rt.update_relay(|s| s.leading = false);
}

async fn wait(
    stop: &mut watch::Receiver<bool>,
    woken: impl std::future::Future<Output = ()>,
    at_most: Duration,
) {
    tokio::select! {
        () = woken => {}
        () = tokio::time::sleep(at_most) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Sequences what committed and publishes one batch after `cursor`; how many went.
async fn relay_once(
    store: &dyn Store,
    bus: &dyn Bus,
    batch: u32,
    cursor: &mut Option<i64>,
) -> Result<usize, String> {
    let log = store.events();
    while log
        .sequence(batch)
        .await
        .map_err(|e| format!("store: {e}"))?
        == batch
    {}
    let from = match *cursor {
        Some(c) => c,
        None => log
            .cursor(RELAY_CURSOR)
            .await
            .map_err(|e| format!("store: {e}"))?,
    };
    let events = log
        .read_after(from, batch)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let Some(last) = events.last().map(|e| e.seq) else {
        *cursor = Some(from);
        return Ok(0);
    };
    let messages: Vec<Message> = events.iter().map(message).collect();
    let span = traces::start_linked(
        "publish",
        || {
            vec![
                KeyValue::new("messaging.system", "tenantry"),
                KeyValue::new("messaging.operation.type", "publish"),
                KeyValue::new("messaging.batch.message_count", events.len() as i64),
                KeyValue::new("tenantry.events.first_position", from + 1),
                KeyValue::new("tenantry.events.last_position", last),
            ]
        },
        events.iter().filter_map(|e| {
            let tp = e.event.to_cloud_event("").traceparent?;
            let cx = traces::extract_traceparent(&tp);
            use opentelemetry::trace::TraceContextExt as _;
            Some(cx.span().span_context().clone())
        }),
    );
    let published = bus.publish_all(&messages).await;
    traces::end(&span, published.is_ok());
    published.map_err(|e| format!("bus: {e}"))?;
    log.save_cursor(RELAY_CURSOR, last, now())
        .await
        .map_err(|e| format!("store: {e}"))?;
    *cursor = Some(last);
    let at = chrono::Utc::now();
    let lag = metrics::histogram!("events_publish_lag_seconds");
    for e in &events {
        lag.record((at - e.event.time).as_seconds_f64().max(0.0));
    }
    metrics::counter!("events_published_total").increment(events.len() as u64);
    Ok(events.len())
}

async fn report_backlog(store: &dyn Store, rt: &EventsRuntime, cursor: Option<i64>) {
    let Ok(stats) = store.events().stats().await else {
        return;
    };
    let published = match cursor {
        Some(c) => c,
        None => store.events().cursor(RELAY_CURSOR).await.unwrap_or(0),
    };
    let backlog = stats.head - published + stats.unsequenced;
    metrics::gauge!("events_relay_backlog").set(backlog as f64);
    let oldest = match stats.oldest_unsequenced {
        Some(t) => Some(t),
        None if backlog > 0 => store
            .events()
            .read_after(published, 1)
            .await
            .ok()
            .and_then(|v| v.first().map(|e| e.event.time)),
        None => None,
    };
    let age = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).as_seconds_f64().max(0.0));
    metrics::gauge!("events_relay_oldest_seconds").set(age);
    rt.update_relay(|s| {
        s.backlog = backlog;
        s.published = published;
    });
}
