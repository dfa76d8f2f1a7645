//! The OpenAPI 3.1 document, generated from the route table: every route with its path and query
//! parameters, the headers the API reads, its request and success schemas (derived from the Rust
//! types with `utoipa`), the Problem+JSON answers, the security schemes and the scope each
//! operation needs. Served at `/openapi.json`, rendered at `/docs` (a self-contained page).

use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::platform::http::routes::{Access, Api, Doc, RouteSpec};

pub fn register(api: Api) -> Api {
    api.add(Method::GET, "/openapi.json", Access::Public, document)
        .doc(Doc::new("This document (OpenAPI 3.1)"))
        .add(Method::GET, "/docs", Access::Public, docs_page)
        .doc(Doc::new("This document, rendered").content_type("text/html"))
}

async fn document() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| build(&super::routes::api().specs).to_string());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

async fn docs_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        include_str!("docs.html"),
    )
        .into_response()
}

/// The path's parameters, in order (`/v1/tenants/{tenant}/api-keys/{key}:rotate` → tenant, key).
fn path_params(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(name, _)| name))
        .collect()
}

fn operation_id(spec: &RouteSpec) -> String {
    let mut id = spec.method.as_str().to_ascii_lowercase();
    for part in spec.path.split(['/', ':', '{', '}']) {
        if !part.is_empty() && part != "v1" {
            id.push('_');
            id.push_str(&part.replace('-', "_"));
        }
    }
    id
}

fn header_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "header", "required": false, "description": description,
            "schema": { "type": "string", "pattern": "^[!-~]{1,255}$" } })
}

fn operation(
    spec: &RouteSpec,
    components: &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) -> Value {
    let doc = &spec.doc;
    let mut params: Vec<Value> = path_params(spec.path)
        .into_iter()
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true,
                    "schema": { "type": "string", "minLength": 1 } })
        })
        .collect();
    for q in &doc.query {
        let schema = match (q.name, q.kind) {
            ("limit", _) => json!({ "type": "integer", "minimum": 1, "maximum": 200 }),
            ("since" | "until", _) => json!({ "type": "string", "format": "date-time" }),
            (_, kind) => json!({ "type": kind, "minLength": 1 }),
        };
        params.push(json!({ "name": q.name, "in": "query", "required": false,
                            "description": q.description, "schema": schema }));
    }
    if let Access::Tenant(_) = spec.access {
        params.push(header_param(
            "X-Tenant-Id",
            "the tenant (id or slug); optional when the credential or the path names it",
        ));
    }
    let writes =
        matches!(spec.method, Method::POST | Method::DELETE) && spec.path != "/v1/jobs:replay";
    if writes && spec.access != Access::Public {
        params.push(header_param(
            "Idempotency-Key",
            "1–255 visible ASCII characters: a retry with the same key and body replays the first answer",
        ));
    }
    if spec.method == Method::PATCH {
        let mut if_match = header_param("If-Match", "the ETag of the version being changed");
        if_match["required"] = json!(true);
        params.push(if_match);
    }
    let mut responses = Map::new();
    let (status, ok_schema) = doc.ok.unwrap_or((200, None));
    let mut ok = json!({ "description": if status == 204 { "done" } else { "success" } });
    if status != 204 {
        let schema = ok_schema.map_or_else(|| json!({}), |f| f(components));
        let media = doc.content_type.unwrap_or("application/json");
        ok["content"] = json!({ media: { "schema": schema } });
    }
    for also in &doc.also {
        responses.insert(also.to_string(), ok.clone());
    }
    responses.insert(status.to_string(), ok);
    let problem = json!({
        "description": "a problem (RFC 9457); `type` says which (docs/problems.md)",
        "content": { "application/problem+json": {
            "schema": { "$ref": "#/components/schemas/Problem" } } },
    });
    responses.insert("4XX".into(), problem.clone());
    responses.insert("5XX".into(), problem);
    let mut op = json!({
        "operationId": operation_id(spec),
        "summary": if doc.summary.is_empty() { spec.path } else { doc.summary },
        "tags": [tag(spec.path)],
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = doc.body {
        let content_type = if spec.method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        op["requestBody"] = json!({
            "required": !doc.body_optional,
            "content": { content_type: { "schema": body(components) } },
        });
    }
    op["security"] = match spec.access {
        Access::Public => json!([]),
        Access::Operator => json!([{ "operatorKey": [] }]),
        Access::Tenant(scope) => {
            let s = scope.as_str();
            json!([{ "operatorKey": [] }, { "tenantKey": [s] }, { "deviceKey": [s] }, { "jwt": [s] }])
        }
    };
    if let Access::Tenant(scope) = spec.access {
        op["x-required-scope"] = json!(scope.as_str());
    }
    op
}

fn tag(path: &str) -> &str {
    let rest = path.trim_start_matches("/v1/");
    let end = rest.find(['/', ':', '?']).unwrap_or(rest.len());
    match &rest[..end] {
        "" => "platform",
        t if path.starts_with("/v1/") => t,
        _ => "platform",
    }
}

/// The whole document.
pub fn build(specs: &[RouteSpec]) -> Value {
    let mut components = Vec::new();
    let mut paths = Map::new();
    for spec in specs {
        let item = paths
            .entry(spec.path.to_owned())
            .or_insert_with(|| json!({}));
        item[spec.method.as_str().to_ascii_lowercase()] = operation(spec, &mut components);
    }
    let mut schemas = Map::new();
    for (name, schema) in components {
        schemas.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    schemas.insert("Problem".into(), problem_schema());
    schemas.insert("PageInfo".into(), page_info_schema());
    let bearer = |description: &str| json!({ "type": "http", "scheme": "bearer", "description": description });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tenantry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A multi-tenant SaaS backbone. Every error is application/problem+json (RFC 9457). Scopes: each operation's `x-required-scope`; operator keys may do everything.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "operatorKey": bearer("an operator API key, `tnt_op_…`: every tenant, every scope"),
                "tenantKey": bearer("a tenant API key, `tnt_sk_…`, with its scopes and roles"),
                "deviceKey": bearer("a device key, `tnt_dk_…`, bound to one device"),
                "jwt": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                         "description": "a JWT from the configured identity provider, bound to one tenant" },
            },
        },
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status", "detail", "traceId"],
        "properties": {
            "type": { "type": "string", "description": "urn:tenantry:problem:<code>" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "instance": { "type": "string" },
            "traceId": { "type": "string", "pattern": "^[0-9a-f]{32}$" },
            "tenantId": { "type": "string" },
            "errors": { "type": "array", "items": { "type": "object",
                "required": ["field", "message"],
                "properties": { "field": { "type": "string" }, "message": { "type": "string" } } } },
        },
    })
}

fn page_info_schema() -> Value {
    json!({
        "type": "object",
        "required": ["next_cursor", "has_next_page", "count"],
        "properties": {
            "next_cursor": { "type": ["string", "null"] },
            "has_next_page": { "type": "boolean" },
            "count": { "type": "integer", "minimum": 0 },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_and_operation_ids() {
        assert_eq!(
            path_params("/v1/tenants/{tenant}/api-keys/{key}:rotate"),
            vec!["tenant", "key"]
        );
        assert_eq!(tag("/v1/tenants/{target}:suspend"), "tenants");
        assert_eq!(tag("/healthz"), "platform");
    }
}
