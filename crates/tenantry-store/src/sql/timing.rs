//! The duration of every store operation, as the histogram `store_operation_duration_seconds`
//! labelled by operation (`capability.method`: a fixed, small set).

use std::time::Instant;

/// Records the time from its creation to its drop (however the operation ends).
pub(crate) struct Timed {
    operation: &'static str,
    started: Instant,
}

impl Timed {
    pub(crate) fn new(operation: &'static str) -> Self {
        Self {
            operation,
            started: Instant::now(),
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!("store_operation_duration_seconds", "operation" => self.operation)
            .record(self.started.elapsed().as_secs_f64());
    }
}
