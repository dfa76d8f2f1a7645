//! What the event fabric holds while the process runs: the bus (connected on first use), the
//! realtime hub, and the relay's last known state (for `/readyz` and the metrics).

use std::sync::{Arc, Mutex, PoisonError};

use tenantry_bus::{Bus, BusError, InProcessBus, NatsBus};
use tokio::sync::{OnceCell, watch};

use super::config::EventsConfig;
use super::hub::Hub;

/// The relay's state as this process last saw it.
#[derive(Clone, Debug, Default)]
pub struct RelayStatus {
    /// Whether this process holds the relay lease.
    pub leading: bool,
    /// Events sequenced but not yet published (when this process relays).
    pub backlog: i64,
    /// The last publish error and when it happened; cleared by a publish that succeeds.
    pub error: Option<(String, chrono::DateTime<chrono::Utc>)>,
    /// The last position published.
    pub published: i64,
}

pub struct EventsRuntime {
    config: EventsConfig,
    bus: OnceCell<Arc<dyn Bus>>,
    hub: Hub,
    relay: Mutex<RelayStatus>,
    closing: watch::Sender<bool>,
}

/// The `source` of every CloudEvent of the platform (stable across instances, so the same event
/// reads the same from the log and from a stream).
pub fn source() -> &'static str {
    "/tenantry/platform"
}

impl EventsRuntime {
    pub fn new(config: EventsConfig) -> Self {
        let hub = Hub::new(config.stream_buffer as usize);
        Self {
            config,
            bus: OnceCell::new(),
            hub,
            relay: Mutex::default(),
            closing: watch::channel(false).0,
        }
    }

    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// The bus: in process, or NATS JetStream when `[events] nats_url` is set (the client keeps
    /// reconnecting; operations fail as unavailable while the server is down).
    pub async fn bus(&self) -> Result<Arc<dyn Bus>, BusError> {
        self.bus
            .get_or_try_init(|| async {
                let url = self.config.nats_url.trim();
                if url.is_empty() {
                    return Ok(
                        Arc::new(InProcessBus::new(&self.config.subject_prefix)) as Arc<dyn Bus>
                    );
                }
                let bus = NatsBus::connect_lazily(
                    url,
                    &self.config.nats_stream,
                    &self.config.subject_prefix,
                    std::time::Duration::from_secs(
                        u64::from(self.config.bus_retention_hours) * 3600,
                    ),
                )
                .await?;
                Ok(Arc::new(bus) as Arc<dyn Bus>)
            })
            .await
            .cloned()
    }

    /// Whether the bus is shared between instances.
    pub fn bus_kind(&self) -> &'static str {
        if self.config.nats_url.trim().is_empty() {
            "in_process"
        } else {
            "nats"
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn relay_status(&self) -> RelayStatus {
        self.relay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn update_relay(&self, f: impl FnOnce(&mut RelayStatus)) {
        f(&mut self.relay.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Ends every realtime stream (the process stops).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}
