//! The realtime hub: each instance reads the bus (a tail of everything published from its start)
//! and hands each tenant's events to that tenant's open streams. The bus is the backplane: an
//! event written through any instance reaches streams on every instance.
//!
//! The hub delivers the log in position order without a gap: a message whose position is not
//! the next one (a message lost or reordered by the bus, a tail recreated after an outage) is
//! preceded by what is missing, read from the log in the database; and when the bus is quiet the
//! hub compares with the relay's cursor, so nothing the relay published waits for the next
//! message. A stream therefore sees its tenant's events in commit order, each once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tenantry_domain::TenantId;
use tenantry_store::Store;
use tenantry_store::events::LoggedEvent;
use tokio::sync::{broadcast, watch};

use super::relay::RELAY_CURSOR;
use super::runtime::EventsRuntime;

/// One event as streams send it.
#[derive(Debug)]
pub struct Item {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    /// The CloudEvent, as JSON.
    pub data: Bytes,
    /// When the event was written (for the delivery-lag histogram).
    pub time: chrono::DateTime<chrono::Utc>,
}

impl Item {
    /// The event as the relay publishes it.
    pub fn of(e: &LoggedEvent) -> Self {
        let m = super::relay::message(e);
        Self {
            seq: e.seq,
            id: m.id,
            event_type: m.event_type,
            data: m.payload,
            time: e.event.time,
        }
    }
}

pub struct Hub {
    capacity: usize,
    tenants: Mutex<HashMap<TenantId, broadcast::Sender<Arc<Item>>>>,
    /// The last position handed to streams (everything up to it has been).
    position: watch::Sender<i64>,
    /// Open streams per tenant.
    open: Mutex<HashMap<TenantId, u32>>,
}

/// An open stream's place in the per-tenant count (released when dropped).
pub struct Slot {
    hub: Arc<EventsRuntime>,
    tenant: TenantId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .hub
            .hub()
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
        metrics::gauge!("events_streams_open").decrement(1.0);
    }
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(16),
            tenants: Mutex::default(),
            // unknown until the hub has read the log's head
            position: watch::channel(-1).0,
            open: Mutex::default(),
        }
    }

    /// The last position handed to streams: a new stream without `Last-Event-ID` starts here.
    /// Negative until the hub has started.
    pub fn position(&self) -> i64 {
        *self.position.borrow()
    }

    /// The tenant's events from now on. A receiver that falls `capacity` events behind is told
    /// it lagged.
    pub fn subscribe(&self, tenant: TenantId) -> broadcast::Receiver<Arc<Item>> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Takes one of the tenant's `limit` stream slots.
    pub fn open(rt: &Arc<EventsRuntime>, tenant: TenantId, limit: u32) -> Option<Slot> {
        let mut open = rt.hub().open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(tenant).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        metrics::gauge!("events_streams_open").increment(1.0);
        Some(Slot {
            hub: Arc::clone(rt),
            tenant,
        })
    }

    fn deliver(&self, tenant: Option<TenantId>, item: Item) {
        let seq = item.seq;
        if let Some(t) = tenant {
            let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tx) = tenants.get(&t)
                && tx.send(Arc::new(item)).is_err()
            {
                tenants.remove(&t); // nobody listens any more
            }
        }
        self.position.send_replace(seq);
    }

    /// Hands out everything in the log after the hub's position up to `through`, from the store.
    async fn fill(&self, store: &dyn Store, through: i64) -> Result<(), String> {
        while self.position() < through {
            let events = store
                .events()
                .read_after(self.position(), 1000)
                .await
                .map_err(|e| e.to_string())?;
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.seq > through {
                    return Ok(());
                }
                let item = Item::of(&e);
                self.deliver(e.event.tenant_id, item);
            }
        }
        Ok(())
    }
}

/// Runs this instance's hub until `stop`.
pub async fn run(store: Arc<dyn Store>, rt: Arc<EventsRuntime>, mut stop: watch::Receiver<bool>) {
    let hub = rt.hub();
    // streams start from what is in the log now
    let head = loop {
        match store.events().stats().await {
            Ok(s) => break s.head,
            Err(e) => {
                tracing::warn!(error = %e, "event hub: cannot read the log; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    hub.position.send_replace(head);
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let tail = match rt.bus().await {
            Ok(bus) => bus.tail(">").await,
            Err(e) => Err(e),
        };
        let mut tail = match tail {
            Ok(t) => {
                backoff = Duration::from_millis(100);
                t
            }
            Err(e) => {
                tracing::debug!(error = %e, "event hub: the bus is unavailable; reading the log");
                catch_up(&*store, hub).await;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                n = tail.next(Duration::from_millis(500)) => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Ok(Some(d)) => {
                    let m = d.message;
                    let seq = i64::try_from(m.position).unwrap_or(0);
                    if seq <= hub.position() {
                        continue; // already handed out (a republished batch)
                    }
                    if seq > hub.position() + 1
                        && let Err(e) = hub.fill(&*store, seq - 1).await
                    {
                        tracing::warn!(error = %e, "event hub: cannot fill a gap from the log");
                    }
                    if seq == hub.position() + 1 {
                        let tenant = m.partition.parse::<TenantId>().ok();
                        let item = Item {
                            seq,
                            id: m.id,
                            event_type: m.event_type,
                            time: event_time(&m.payload),
                            data: m.payload,
                        };
                        hub.deliver(tenant, item);
                    }
                }
                Ok(None) => catch_up(&*store, hub).await,
                Err(e) => {
                    tracing::debug!(error = %e, "event hub: the bus tail failed; starting another");
                    break;
                }
            }
        }
    }
}

/// Hands out what the relay has published that the hub has not seen (quiet bus, lost tail).
async fn catch_up(store: &dyn Store, hub: &Hub) {
    if let Ok(published) = store.events().cursor(RELAY_CURSOR).await
        && published > hub.position()
        && let Err(e) = hub.fill(store, published).await
    {
        tracing::warn!(error = %e, "event hub: cannot read the log");
    }
}

fn event_time(payload: &[u8]) -> chrono::DateTime<chrono::Utc> {
    #[derive(serde::Deserialize)]
    struct Time {
        time: chrono::DateTime<chrono::Utc>,
    }
    serde_json::from_slice::<Time>(payload).map_or_else(|_| chrono::Utc::now(), |t| t.time)
}
