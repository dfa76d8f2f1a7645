//! The access capability's routes: tenant keys, devices, whoami; and the rate-limit middleware
//! the router puts in front of every authenticated route.

pub mod devices;
pub mod keys;
pub mod limits;
pub mod whoami;

use crate::platform::http::routes::Api;

pub fn register(api: Api) -> Api {
    whoami::register(devices::register(keys::register(api)))
}
