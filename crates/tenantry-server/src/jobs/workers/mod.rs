//! Background work: the job worker, lease recovery and queue gauges (the scheduler and other
//! singleton loops join them here).

pub mod registry;
pub mod runner;
pub mod scheduler;

pub use registry::{JobContext, JobError, JobHandler, JobKind, Registry, no_prepare};
pub use runner::{Worker, WorkerSettings, worker_id};
