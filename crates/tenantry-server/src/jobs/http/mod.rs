//! The jobs capability's routes: jobs and the dead-letter console, schedules.

pub mod jobs;
pub mod schedules;

use crate::platform::http::routes::Api;

pub fn register(api: Api) -> Api {
    schedules::register(jobs::register(api))
}
