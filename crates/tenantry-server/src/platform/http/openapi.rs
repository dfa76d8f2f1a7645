//! The OpenAPI 3.1 document, generated from the route table: every route with its path and query
//! parameters, the headers the API reads, its request and success schemas (derived from the Rust
//! types with `utoipa`), the Problem+JSON answers, the security schemes and the scope each
//! operation needs. Served at `/openapi.json`, rendered at `/docs` (a self-contained page).

use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::platform::http::AppState;
use crate::platform::http::routes::{Access, Api, Doc, RouteSpec};

/// A name people read: 1–200 characters, not only spaces, no control characters and no
/// bidirectional overrides (the text policy of docs/problems.md).
const NAME: &str = r#"{"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c]*[^\\s\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c][^\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c]*$"}"#;
const DESCRIPTION: &str = r#"{"type": "string", "maxLength": 2000, "pattern": "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c]*$"}"#;
const SLUG: &str =
    r#"{"type": "string", "minLength": 3, "maxLength": 63, "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"}"#;
const KEY: &str =
    r#"{"type": "string", "minLength": 2, "maxLength": 63, "pattern": "^[a-z0-9-]+$"}"#;
const REGION: &str =
    r#"{"type": "string", "minLength": 2, "maxLength": 32, "pattern": "^[a-z0-9-]+$"}"#;
const VISIBLE_ASCII: &str =
    r#"{"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!#-\\[\\]-~]+$"}"#;
const QUEUE: &str = r#"{"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}"#;

/// The validation rules of the request bodies, in JSON Schema: (schema, property, constraint).
/// Merged into the schemas `utoipa` derives from the types (which know the types, not the rules);
/// a test checks that each names a property that exists.
const CONSTRAINTS: &[(&str, &str, &str)] = &[
    ("NewTenant", "name", NAME),
    ("NewTenant", "slug", SLUG),
    ("NewTenant", "edition", KEY),
    ("NewTenant", "region", REGION),
    (
        "NewTenant",
        "isolation",
        r#"{"enum": ["pooled", "schema", "database"]}"#,
    ),
    ("TenantPatchIn", "name", NAME),
    ("TenantPatchIn", "edition", KEY),
    ("TenantPatchIn", "region", REGION),
    ("NewEdition", "key", KEY),
    ("NewEdition", "name", NAME),
    ("NewEdition", "description", DESCRIPTION),
    ("EditionLimits", "requests_per_minute", r#"{"minimum": 1}"#),
    ("EditionLimits", "burst", r#"{"minimum": 1}"#),
    ("EditionLimits", "concurrency", r#"{"minimum": 1}"#),
    ("EditionLimits", "storage_gb", r#"{"minimum": 1}"#),
    (
        "EditionLimits",
        "webhook_subscriptions",
        r#"{"minimum": 1}"#,
    ),
    ("EditionLimits", "retention_days", r#"{"minimum": 1}"#),
    (
        "EditionLimits",
        "min_schedule_interval_seconds",
        r#"{"minimum": 1}"#,
    ),
    (
        "NewDevice",
        "device_id",
        r#"{"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}"#,
    ),
    ("NewDevice", "name", NAME),
    ("NewDevice", "metadata", r#"{"type": "object"}"#),
    ("NewTenantKey", "name", NAME),
    ("NewTenantKey", "rate_limit_per_minute", r#"{"minimum": 1}"#),
    ("RotateKey", "grace_seconds", r#"{"maximum": 2592000}"#),
    ("JobRequest", "queue", QUEUE),
    (
        "JobRequest",
        "priority",
        r#"{"minimum": -100, "maximum": 100}"#,
    ),
    ("JobRequest", "unique_key", VISIBLE_ASCII),
    (
        "JobRequest",
        "unique_window_seconds",
        r#"{"maximum": 31536000}"#,
    ),
    (
        "JobRequest",
        "max_attempts",
        r#"{"minimum": 1, "maximum": 100}"#,
    ),
    (
        "JobRequest",
        "lease_seconds",
        r#"{"minimum": 1, "maximum": 3600}"#,
    ),
    ("JobRequest", "payload", r#"{"type": "object"}"#),
    (
        "ScheduleRequest",
        "name",
        r#"{"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$"}"#,
    ),
    (
        "ScheduleRequest",
        "interval_seconds",
        r#"{"minimum": 1, "maximum": 31536000}"#,
    ),
    ("ScheduleRequest", "payload", r#"{"type": "object"}"#),
];

fn widen_u32(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let unsigned = m.get("format").is_some_and(|f| f == "int32")
                && m.get("minimum").is_some_and(|n| n == 0);
            if unsigned {
                m.insert("format".into(), json!("int64"));
                m.entry("maximum").or_insert(json!(u32::MAX));
            }
            for child in m.values_mut() {
                widen_u32(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(widen_u32),
        _ => {}
    }
}

/// Applies [`CONSTRAINTS`] and the catalogs (scopes, roles) to the derived schemas.
fn constrain(schemas: &mut Map<String, Value>) {
    // utoipa gives u32 `format: int32`, which bounds it to 2^31 - 1: the real bound is 2^32 - 1
    for schema in schemas.values_mut() {
        widen_u32(schema);
    }
    for (schema, property, rule) in CONSTRAINTS {
        let Some(target) = schemas
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let rule: Map<String, Value> = serde_json::from_str(rule).expect("constraints are JSON");
        let nullable = target
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "null"));
        for (k, v) in rule {
            // keep `null` allowed where the field is optional
            let v = match (k.as_str(), &v, nullable) {
                ("type", Value::String(t), true) => json!([t, "null"]),
                _ => v,
            };
            target.insert(k, v);
        }
        if nullable && let Some(Value::Array(e)) = target.get_mut("enum") {
            e.push(Value::Null);
        }
    }
    // a batch holds 1 to 1 000 jobs
    if let Some(Value::Array(shapes)) = schemas
        .get_mut("EnqueueBody")
        .and_then(|s| s.get_mut("oneOf"))
    {
        for shape in shapes {
            if let Some(jobs) = shape.pointer_mut("/properties/jobs") {
                jobs["minItems"] = json!(1);
                jobs["maxItems"] = json!(1000);
            }
        }
    }
    let scopes: Vec<&str> = tenantry_domain::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let roles: Vec<&str> = tenantry_domain::Role::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| *r != "operator")
        .collect();
    if let Some(p) = schemas
        .get_mut("NewTenantKey")
        .and_then(|s| s.get_mut("properties"))
    {
        p["scopes"] = json!({ "type": "array", "maxItems": 64, "items": { "enum": scopes } });
        p["roles"] = json!({ "type": "array", "maxItems": 64, "items": { "enum": roles } });
    }
}

pub fn register(api: Api) -> Api {
    api.add(Method::GET, "/openapi.json", Access::Public, document)
        .doc(Doc::new("This document (OpenAPI 3.1)"))
        .add(Method::GET, "/docs", Access::Public, docs_page)
        .doc(Doc::new("This document, rendered").content_type("text/html"))
}

async fn document(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| {
        let mut doc = build(&super::routes::api().specs);
        // the job kinds this server runs (a process with other kinds registered serves its own)
        let kinds: Vec<&str> = state.jobs.names();
        for schema in ["JobRequest", "ScheduleRequest"] {
            doc["components"]["schemas"][schema]["properties"]["kind"]["enum"] = json!(kinds);
        }
        doc.to_string()
    });
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
            _ if !q.values.is_empty() => json!({ "type": "string", "enum": q.values }),
            ("limit", _) => json!({ "type": "integer", "minimum": 1, "maximum": 200 }),
            ("since" | "until" | "from" | "to", _) => {
                json!({ "type": "string", "format": "date-time" })
            }
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
    let writes = matches!(spec.method, Method::POST | Method::DELETE) && !doc.no_idempotency_key;
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
    constrain(&mut schemas);
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
    fn every_constraint_names_a_property_that_exists() {
        let doc = build(&crate::platform::http::routes::api().specs);
        for (schema, property, rule) in CONSTRAINTS {
            assert!(
                doc["components"]["schemas"][schema]["properties"][property].is_object(),
                "{schema}.{property} does not exist"
            );
            let _: Value = serde_json::from_str(rule).expect("a JSON constraint");
        }
    }

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
