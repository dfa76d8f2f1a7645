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
    /// Whether the route reads query parameters (`add_queried`).
    pub queried: bool,
    /// What the OpenAPI document says of it beyond the above (`Api::doc`).
    pub doc: Doc,
}

/// A schema for the OpenAPI document: adds what it refers to into the components and returns
/// the schema (usually a reference). Made by [`schema`] and [`page_of`].
pub type SchemaFn = fn(
    &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) -> serde_json::Value;

/// The schema of `T`, registered as a component.
pub fn schema<T: utoipa::ToSchema>(
    components: &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) -> serde_json::Value {
    T::schemas(components);
    let name = T::name().into_owned();
    components.push((name.clone(), T::schema()));
    serde_json::json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A page of `T` (`{items, page_info}`).
pub fn page_of<T: utoipa::ToSchema>(
    components: &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": ["items", "page_info"],
        "properties": {
            "items": { "type": "array", "items": schema::<T>(components) },
            "page_info": { "$ref": "#/components/schemas/PageInfo" },
        },
    })
}

/// A query parameter of a route.
#[derive(Clone, Copy, Debug)]
pub struct QueryParam {
    pub name: &'static str,
    /// A JSON Schema type: `string`, `integer`, `boolean`.
    pub kind: &'static str,
    pub description: &'static str,
    /// The values it takes, when they are a fixed set.
    pub values: &'static [&'static str],
}

impl QueryParam {
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: "string",
            description,
            values: &[],
        }
    }

    pub const fn one_of(
        name: &'static str,
        description: &'static str,
        values: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind: "string",
            description,
            values,
        }
    }
}

/// The paging parameters of every cursor-paginated list.
pub const PAGING: [QueryParam; 2] = [
    QueryParam {
        name: "limit",
        kind: "integer",
        description: "page size, 1–200 (default 50)",
        values: &[],
    },
    QueryParam::string(
        "cursor",
        "the `next_cursor` of the previous page of the same list",
    ),
];

/// What the OpenAPI document says of a route: a summary, its body, its success answer, its query
/// parameters.
#[derive(Clone, Debug, Default)]
pub struct Doc {
    pub summary: &'static str,
    pub body: Option<SchemaFn>,
    /// The body may be left out entirely (every field optional).
    pub body_optional: bool,
    pub ok: Option<(u16, Option<SchemaFn>)>,
    /// Other success statuses with the same body (`200` for an existing unique job).
    pub also: Vec<u16>,
    /// The success answer's media type, when it is not `application/json`.
    pub content_type: Option<&'static str>,
    pub query: Vec<QueryParam>,
    /// A write that refuses `Idempotency-Key` because it is idempotent by itself (its answer says
    /// what it did, and a retry is safe as it is).
    pub no_idempotency_key: bool,
}

impl Doc {
    pub fn new(summary: &'static str) -> Self {
        Self {
            summary,
            ..Self::default()
        }
    }

    pub fn body<T: utoipa::ToSchema>(mut self) -> Self {
        self.body = Some(schema::<T>);
        self
    }

    /// The write refuses `Idempotency-Key`: it is idempotent by itself.
    pub fn idempotent_by_itself(mut self) -> Self {
        self.no_idempotency_key = true;
        self
    }

    pub fn optional_body<T: utoipa::ToSchema>(mut self) -> Self {
        self.body = Some(schema::<T>);
        self.body_optional = true;
        self
    }

    pub fn ok<T: utoipa::ToSchema>(mut self, status: u16) -> Self {
        self.ok = Some((status, Some(schema::<T>)));
        self
    }

    pub fn page<T: utoipa::ToSchema>(mut self) -> Self {
        self.ok = Some((200, Some(page_of::<T>)));
        self
    }

    /// A success with no body (`204`).
    pub fn no_content(mut self) -> Self {
        self.ok = Some((204, None));
        self
    }

    /// A success answer that is not JSON (`text/html`, the Prometheus text format).
    pub fn content_type(mut self, media: &'static str) -> Self {
        self.content_type = Some(media);
        self
    }

    /// Another success status with the same body.
    pub fn also(mut self, status: u16) -> Self {
        self.also.push(status);
        self
    }

    pub fn query(mut self, params: &[QueryParam]) -> Self {
        self.query.extend_from_slice(params);
        self
    }
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

    /// A route that takes no query parameters: any is a `400 invalid_query` (public routes, such
    /// as health checks, ignore them instead).
    pub fn add<H, T>(self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.register(method, path, access, handler, false)
    }

    /// A route that reads query parameters (with [`ApiQuery`](super::extract::ApiQuery), which
    /// refuses unknown ones).
    pub fn add_queried<H, T>(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.register(method, path, access, handler, true)
    }

    fn register<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
        queried: bool,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let served = router_path(path);
        if self.registered.insert((method.clone(), served.clone())) {
            let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
            let mut route = on(filter, handler);
            // GET and DELETE never take a body here; other operations without one say so with
            // the `NoBody` extractor
            let bodiless = matches!(method, Method::GET | Method::HEAD | Method::DELETE);
            if access != Access::Public && (!queried || bodiless) {
                route = route.route_layer(axum::middleware::from_fn_with_state(
                    Plain {
                        query: !queried,
                        body: bodiless,
                    },
                    refuse_unread,
                ));
            }
            self.router = self.router.route(&served, route);
        }
        self.specs.push(RouteSpec {
            method,
            path,
            access,
            queried,
            doc: Doc::default(),
        });
        self
    }

    /// Documents the route added last.
    pub fn doc(mut self, doc: Doc) -> Self {
        if let Some(last) = self.specs.last_mut() {
            last.doc = doc;
        }
        self
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// What a route refuses because it would not read it: query parameters, a body.
#[derive(Clone, Copy)]
struct Plain {
    query: bool,
    body: bool,
}

/// Refuses what the route would ignore silently: query parameters on a route that reads none, a
/// body on a GET or DELETE.
async fn refuse_unread(
    axum::extract::State(plain): axum::extract::State<Plain>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if plain.body && super::extract::has_body(req.headers()) {
        return super::problem::Problem::new(
            super::problem::Kind::BadRequest,
            format!(
                "{} {} takes no body; send none",
                req.method(),
                req.uri().path()
            ),
        )
        .into_response();
    }
    match req.uri().query().filter(|q| plain.query && !q.is_empty()) {
        Some(q) => {
            let names: Vec<&str> = q
                .split('&')
                .filter_map(|pair| pair.split('=').next())
                .filter(|n| !n.is_empty())
                .take(5)
                .collect();
            super::problem::Problem::new(
                super::problem::Kind::InvalidQuery,
                format!(
                    "{} {} takes no query parameters (got {})",
                    req.method(),
                    req.uri().path(),
                    names.join(", ")
                ),
            )
            .into_response()
        }
        None => next.run(req).await,
    }
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `path` (a request path) is an instance of the route `template`: `{x}` takes one
/// segment without `:`, `{x}:verb` one ending in `:verb`.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| match t.split_once('}') {
            Some((open, verb)) if open.starts_with('{') => match verb {
                "" => !p.is_empty() && !p.contains(':'),
                verb => p
                    .strip_suffix(verb)
                    .is_some_and(|id| !id.is_empty() && !id.contains(':')),
            },
            _ => t == p,
        })
}

/// The methods the route table serves at a request path (custom-method paths such as
/// `/v1/jobs/{id}:cancel` apart from their resource's), with `HEAD` where `GET` is.
pub fn allowed_methods(path: &str) -> Vec<Method> {
    static TABLE: std::sync::OnceLock<Vec<(Method, &'static str)>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        api()
            .specs
            .into_iter()
            .map(|s| (s.method, s.path))
            .collect()
    });
    let mut out: Vec<Method> = Vec::new();
    for (method, template) in table {
        if matches_template(template, path) && !out.contains(method) {
            out.push(method.clone());
            if *method == Method::GET {
                out.push(Method::HEAD);
            }
        }
    }
    out
}

/// Gives a `405` the `Allow` header of the route table, which tells custom methods apart (the
/// router sees `/v1/jobs/{id}:cancel` as `/v1/jobs/{id}` and would list that path's methods).
pub async fn allow_from_the_table(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        // `/t/{tenant}/…` names the same route as `…`
        let path = match path.strip_prefix("/t/").and_then(|r| r.split_once('/')) {
            Some((_, rest)) => format!("/{rest}"),
            None => path,
        };
        let allowed = allowed_methods(&path);
        if !allowed.is_empty() {
            let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            if let Ok(v) = axum::http::HeaderValue::from_str(&list.join(", ")) {
                resp.headers_mut().insert(axum::http::header::ALLOW, v);
            }
        }
    }
    resp
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
    fn request_paths_match_their_templates() {
        use super::matches_template as m;
        assert!(m("/v1/jobs/{job}", "/v1/jobs/abc"));
        assert!(!m("/v1/jobs/{job}", "/v1/jobs/abc:cancel"));
        assert!(m("/v1/jobs/{job}:cancel", "/v1/jobs/abc:cancel"));
        assert!(!m("/v1/jobs/{job}:cancel", "/v1/jobs/:cancel"));
        assert!(!m("/v1/jobs/{job}:cancel", "/v1/jobs/abc:retry"));
        assert!(m("/v1/jobs:replay", "/v1/jobs:replay"));
        assert!(!m("/v1/jobs", "/v1/jobs/x"));
    }

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
