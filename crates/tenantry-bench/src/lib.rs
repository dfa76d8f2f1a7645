//! tenantry's reproducible benchmarks (`tenantry bench …`), kept out of the shipped libraries:
//! they run the product in process on fresh test stores, which needs the libraries' `testing`
//! support. Each benchmark measures its baseline in the same run (docs/benchmarks.md).

pub mod events;
pub mod http;
pub mod jobs;
pub mod sync;
pub mod telemetry;
pub mod traces;
pub mod webhooks;
