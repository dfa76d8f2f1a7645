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
    let mut pos = Position::default();
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
                pos.reset(); // another relay moves the cursor
                wait(&mut stop, notified, RENEW_EVERY).await;
                continue;
            }
        }
        let outcome = match rt.bus().await {
            Ok(bus) => relay_once(&*store, &bus, batch, &mut pos).await,
            Err(e) => Err(format!("bus: {e}")),
        };
        if stats_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            stats_at = Some(Instant::now());
            report_backlog(&*store, &rt, pos.published).await;
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
                pos.reset(); // from the saved position: nothing is assumed published
                wait(&mut stop, std::future::pending::<()>(), backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // the batch in flight: confirmed and saved, or published again by the next relay
    if let Some(f) = pos.in_flight.take()
        && let Ok(Ok(())) = f.task.await
    {
        let _ = store
            .events()
            .save_cursor(RELAY_CURSOR, f.last, now())
            .await;
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

/// A batch on its way to the bus.
struct InFlight {
    last: i64,
    times: Vec<chrono::DateTime<chrono::Utc>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Where the relay is: `published` is the saved cursor (`None`: read it again), `read` how far
/// it has read ahead, `in_flight` the batch being published while the next one is read.
#[derive(Default)]
struct Position {
    published: Option<i64>,
    read: Option<i64>,
    in_flight: Option<InFlight>,
}

impl Position {
    /// Forgets everything not saved: the next round starts from the saved cursor.
    fn reset(&mut self) {
        if let Some(f) = self.in_flight.take() {
            f.task.abort();
        }
        self.published = None;
        self.read = None;
    }
}

/// One round: sequences what committed, reads the batch after what was read, then waits for the
/// batch in flight (saving the cursor past it) and sends the new one — so reading the store and
/// publishing overlap. Returns how many events were confirmed published.
async fn relay_once(
    store: &dyn Store,
    bus: &Arc<dyn Bus>,
    batch: u32,
    pos: &mut Position,
) -> Result<usize, String> {
    let log = store.events();
    let store_err = |e: tenantry_store::StoreError| format!("store: {e}");
    // one batch per round: sequencing overlaps the publish in flight like the read does
    log.sequence(batch).await.map_err(store_err)?;
    let published = match pos.published {
        Some(c) => c,
        None => log.cursor(RELAY_CURSOR).await.map_err(store_err)?,
    };
    pos.published = Some(published);
    let from = pos.read.unwrap_or(published);
    let events = log.read_after(from, batch).await.map_err(store_err)?;
    let mut confirmed = 0;
    if let Some(f) = pos.in_flight.take() {
        match f.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("publish task: {e}")),
        }
        log.save_cursor(RELAY_CURSOR, f.last, now())
            .await
            .map_err(store_err)?;
        pos.published = Some(f.last);
        let at = chrono::Utc::now();
        let lag = metrics::histogram!("events_publish_lag_seconds");
        for t in &f.times {
            lag.record((at - *t).as_seconds_f64().max(0.0));
        }
        metrics::counter!("events_published_total").increment(f.times.len() as u64);
        confirmed = f.times.len();
    }
    let Some(last) = events.last().map(|e| e.seq) else {
        pos.read = pos.published;
        return Ok(confirmed);
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
            use opentelemetry::trace::TraceContextExt as _;
            let tp = e.event.to_cloud_event("").traceparent?;
            let cx = traces::extract_traceparent(&tp);
            Some(cx.span().span_context().clone())
        }),
    );
    let bus = Arc::clone(bus);
    let task = tokio::spawn(async move {
        let published = bus.publish_all(&messages).await;
        traces::end(&span, published.is_ok());
        published.map_err(|e| format!("bus: {e}"))
    });
    pos.in_flight = Some(InFlight {
        last,
        times: events.iter().map(|e| e.event.time).collect(),
        task,
    });
    pos.read = Some(last);
    // nothing confirmed yet but work in flight: come back at once
    Ok(confirmed.max(1))
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
