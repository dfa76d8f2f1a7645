//! The route table. Every route is registered here with what it needs (public, operator, or a
//! scope on a tenant), so that the table is the single source for the router, the documentation
//! and the cross-tenant test harness, which walks it: a new route is covered without anyone
//! remembering to add it.

use std::collections::HashSet;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use tenantry_domain::Scope;

use crate::platform::http::AppState;

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    Operator,
    /// A credential with this scope, on the request's resolved tenant.
    Tenant(Scope),
}

#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub method: Method,
    /// The documented path, with custom-method suffixes (`/v1/tenants/{tenant}:suspend`).
    pub path: &'static str,
    pub access: Access,
}

/// Builds the router and its table together.
pub struct Api {
    router: Router<AppState>,
    registered: HashSet<(Method, String)>,
    pub specs: Vec<RouteSpec>,
}

/// `/v1/x/{id}:verb` is served by the route `/v1/x/{id}` (the handler reads the verb).
fn router_path(path: &str) -> String {
    match path.rfind('}') {
        Some(i) if path[i + 1..].starts_with(':') => path[..=i].to_owned(),
        _ => path.to_owned(),
    }
}

impl Api {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            registered: HashSet::new(),
            specs: Vec::new(),
        }
    }

    pub fn add<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let served = router_path(path);
        if self.registered.insert((method.clone(), served.clone())) {
            let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
            self.router = self.router.route(&served, on(filter, handler));
        }
        self.specs.push(RouteSpec {
            method,
            path,
            access,
        });
        self
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

/// Every route of the API: each capability's, in [`crate::CAPABILITIES`] order.
pub fn api() -> Api {
    crate::CAPABILITIES
        .iter()
        .fold(Api::new(), |api, c| (c.routes)(api))
}

#[cfg(test)]
mod tests {
    #[test]
    fn custom_methods_share_their_resource_route() {
        assert_eq!(
            super::router_path("/v1/tenants/{tenant}:suspend"),
            "/v1/tenants/{tenant}"
        );
        assert_eq!(
            super::router_path("/v1/tenants/{tenant}/api-keys"),
            "/v1/tenants/{tenant}/api-keys"
        );
    }
}
