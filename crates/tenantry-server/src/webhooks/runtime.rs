//! The process's webhooks state: the guarded egress client every delivery uses, the sealer of
//! signing secrets, and the signal that wakes this process's dispatcher (a test message or a
//! replay written here). `App::webhooks()`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::WebhooksConfig;
use crate::platform::egress::{Egress, EgressConfig};
use crate::platform::sealing::Sealer;

pub struct WebhooksRuntime {
    config: WebhooksConfig,
    egress_config: EgressConfig,
    egress: OnceLock<Result<Egress, String>>,
    sealer: Sealer,
    wake: Arc<Notify>,
}

impl WebhooksRuntime {
    pub fn new(config: WebhooksConfig, egress: EgressConfig, sealer: Sealer) -> Self {
        Self {
            config,
            egress_config: egress,
            egress: OnceLock::new(),
            sealer,
            wake: Arc::default(),
        }
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The guarded client (made on first use). Each attempt sets its own timeout (the
    /// subscription's `timeout_ms`); this one only bounds a request that sets none.
    pub fn egress(&self) -> Result<&Egress, String> {
        self.egress
            .get_or_init(|| {
                Egress::new(self.egress_config.policy(), Duration::from_secs(30))
                    .map_err(|e| format!("the egress client cannot be made: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Wakes this process's dispatcher (other processes look on their own within `poll_ms`).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn wake_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }
}
