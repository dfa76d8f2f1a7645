//! The catalog of event types (seed 001's schema catalog): each type the platform emits, with
//! its version, what it means, and a JSON Schema (draft 2020-12) of its `data`. Schemas name
//! what a consumer may rely on; events may carry more (`additionalProperties` is allowed), and a
//! breaking change is a new version (`….v2`), listed beside the old one.

use serde_json::{Value, json};

/// One event type.
#[derive(Clone, Copy, Debug)]
pub struct EventType {
    /// `tenant.created.v1`.
    pub name: &'static str,
    /// Who receives it: `tenant` (in the tenant's log and stream) or `platform` (no tenant).
    pub audience: &'static str,
    pub description: &'static str,
    schema: fn() -> Value,
}

impl EventType {
    pub fn version(&self) -> u32 {
        self.name
            .rsplit_once(".v")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1)
    }

    /// The JSON Schema of the event's `data`.
    pub fn schema(&self) -> Value {
        let mut s = (self.schema)();
        if let Value::Object(o) = &mut s {
            o.insert(
                "$schema".into(),
                json!("https://json-schema.org/draft/2020-12/schema"),
            );
            o.insert(
                "$id".into(),
                json!(format!("urn:tenantry:event:{}", self.name)),
            );
            o.insert("title".into(), json!(self.name));
        }
        s
    }
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

fn tenant() -> Value {
    object(
        &["tenant"],
        json!({ "tenant": object(&["id", "slug", "name", "edition", "status"], json!({
            "id": uuid(), "slug": {"type": "string"}, "name": {"type": "string"},
            "edition": {"type": "string"}, "status": {"type": "string"},
        })) }),
    )
}

fn key() -> Value {
    object(&["key_id"], json!({ "key_id": uuid() }))
}

fn device() -> Value {
    object(
        &["device_id"],
        json!({ "device_id": {"type": "string"}, "name": {"type": ["string", "null"]} }),
    )
}

fn job() -> Value {
    object(
        &["job_id", "kind"],
        json!({ "job_id": uuid(), "kind": {"type": "string"}, "state_before": {"type": "string"} }),
    )
}

fn replay() -> Value {
    object(
        &[],
        json!({ "kind": {"type": ["string", "null"]}, "tenant_id": {"type": ["string", "null"]} }),
    )
}

fn schedule() -> Value {
    object(
        &["name", "kind"],
        json!({
            "name": {"type": "string"}, "kind": {"type": "string"},
            "cron": {"type": ["string", "null"]}, "interval_ms": {"type": ["integer", "null"]},
            "enabled": {"type": "boolean"},
        }),
    )
}

fn schedule_deleted() -> Value {
    object(&["name"], json!({ "name": {"type": "string"} }))
}

fn source() -> Value {
    object(
        &["source_id", "name", "kind"],
        json!({ "source_id": uuid(), "name": {"type": "string"}, "kind": {"type": "string"} }),
    )
}

fn run(extra_required: &[&str], extra: Value) -> Value {
    let mut props = json!({ "source_id": uuid(), "source": {"type": "string"}, "run_id": uuid() });
    if let (Value::Object(p), Value::Object(e)) = (&mut props, extra) {
        p.extend(e);
    }
    let mut required = vec!["source_id", "source", "run_id"];
    required.extend_from_slice(extra_required);
    object(&required, props)
}

fn edition() -> Value {
    object(
        &["edition"],
        json!({ "edition": object(&["key"], json!({ "key": {"type": "string"} })) }),
    )
}

macro_rules! types {
    ($($name:literal, $audience:literal, $schema:expr, $doc:literal;)+) => {
        /// Every event type, in name order.
        pub const TYPES: &[EventType] = &[
            $(EventType { name: $name, audience: $audience, description: $doc, schema: $schema }),+
        ];
    };
}

types! {
    "api_key.created.v1", "tenant", key, "An API key was created (an operator key: an event of no tenant).";
    "api_key.revoked.v1", "tenant", key, "An API key was revoked.";
    "api_key.rotated.v1", "tenant", key, "An API key was rotated: `successor` is the new key, the old one works until `old_expires_at`.";
    "device.created.v1", "tenant", device, "A device was registered (by an operator, a tenant key, or on its first telemetry event).";
    "device.deleted.v1", "tenant", device, "A device was removed.";
    "edition.created.v1", "platform", edition, "An edition was added to the catalog.";
    "job.cancelled.v1", "tenant", job, "A job was cancelled (a running one stops at its next heartbeat).";
    "job.replayed.v1", "tenant", replay, "Dead jobs matching a filter were queued again.";
    "job.retried.v1", "tenant", job, "A failed or dead job was queued again.";
    "schedule.created.v1", "tenant", schedule, "A schedule was created.";
    "schedule.deleted.v1", "tenant", schedule_deleted, "A schedule was deleted.";
    "schedule.updated.v1", "tenant", schedule, "A schedule was replaced.";
    "source.created.v1", "tenant", source, "A sync source was created.";
    "source.deleted.v1", "tenant", source, "A sync source was deleted.";
    "source.run.completed.v1", "tenant", || run(&["counts"], json!({"counts": {"type": "object"}, "resumed": {"type": "boolean"}})), "A source run completed: what it inserted, updated, left unchanged and removed.";
    "source.run.failed.v1", "tenant", || run(&["error", "attempt", "dead"], json!({"error": {"type": "string"}, "attempt": {"type": "integer"}, "dead": {"type": "boolean"}})), "A source run attempt failed; `dead` when no attempt is left.";
    "source.updated.v1", "tenant", source, "A sync source was changed.";
    "tenant.created.v1", "tenant", tenant, "A tenant was created.";
    "tenant.deleted.v1", "tenant", tenant, "A tenant was deleted (restorable during the grace period).";
    "tenant.restored.v1", "tenant", tenant, "A deleted tenant was restored.";
    "tenant.resumed.v1", "tenant", tenant, "A suspended tenant was resumed.";
    "tenant.suspended.v1", "tenant", tenant, "A tenant was suspended.";
    "tenant.updated.v1", "tenant", tenant, "A tenant's name or edition changed.";
    "webhook.subscription.created.v1", "tenant", subscription, "A webhook subscription was created.";
    "webhook.subscription.deleted.v1", "tenant", subscription, "A webhook subscription was deleted.";
    "webhook.subscription.disabled.v1", "tenant", || subscription_with(&["reason"], json!({"reason": {"type": "string"}})), "A webhook subscription was disabled by the platform: its endpoint answered 410 Gone, or every attempt failed for `[webhooks] disable_after_hours`. `reason` says which.";
    "webhook.subscription.secret_rotated.v1", "tenant", || subscription_with(&["previous_expires_at"], json!({"previous_expires_at": {"type": "string", "format": "date-time"}})), "A webhook subscription's signing secret was rotated; the previous one also signs until `previous_expires_at`.";
    "webhook.subscription.updated.v1", "tenant", subscription, "A webhook subscription was changed (or re-enabled).";
    "webhook.test.v1", "tenant", || object(&["subscription_id"], json!({"subscription_id": uuid(), "message": {"type": "string"}})), "A test delivery (`POST /v1/webhooks/subscriptions/{id}:test`): sent to that subscription only, never in the log.";
}

fn subscription() -> Value {
    subscription_with(&[], json!({}))
}

fn subscription_with(required: &[&str], extra: Value) -> Value {
    let mut properties = json!({
        "subscription_id": uuid(), "url_host": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}}, "enabled": {"type": "boolean"},
    });
    if let (Value::Object(p), Value::Object(e)) = (&mut properties, extra) {
        p.extend(e);
    }
    let mut req = vec!["subscription_id"];
    req.extend_from_slice(required);
    object(&req, properties)
}

/// The type named `name`.
pub fn find(name: &str) -> Option<&'static EventType> {
    TYPES.iter().find(|t| t.name == name)
}

/// A stream's or a query's type pattern: an exact type, or a prefix ending in `.*`
/// (`device.*`); `*` alone is every type.
pub fn valid_pattern(p: &str) -> bool {
    let body = p.strip_suffix(".*").unwrap_or(p);
    p == "*"
        || (!body.is_empty()
            && body.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            }))
}

/// Whether `event_type` matches `pattern` ([`valid_pattern`]).
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("device.*", "device.created.v1"));
        assert!(!matches("device.*", "devices.created.v1"));
        assert!(matches("*", "x.v1"));
        assert!(matches("tenant.created.v1", "tenant.created.v1"));
        assert!(!matches("tenant.created", "tenant.created.v1"));
        assert!(valid_pattern("source.run.*") && valid_pattern("*"));
        assert!(!valid_pattern("Device.*") && !valid_pattern(".*") && !valid_pattern("a..b"));
        assert!(!valid_pattern("a.**") && !valid_pattern("a%"));
    }

    #[test]
    fn the_catalog_is_sorted_unique_and_versioned() {
        let names: Vec<_> = TYPES.iter().map(|t| t.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for t in TYPES {
            assert_eq!(t.version(), 1, "{}", t.name);
            assert_eq!(t.schema()["type"], "object");
        }
    }

    /// Every event type the server's source emits is in the catalog.
    #[test]
    fn every_emitted_type_is_listed() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut missing = Vec::new();
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.ends_with("catalog.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    let looks_like_type = piece.ends_with(".v1")
                        && piece.contains('.')
                        && !piece.starts_with('/')
                        && piece.bytes().all(|b| {
                            b.is_ascii_lowercase() || b == b'.' || b == b'_' || b.is_ascii_digit()
                        });
                    if looks_like_type && find(piece).is_none() {
                        missing.push(format!("{}: {piece}", path.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "event types not in the catalog: {missing:?}"
        );
    }
}
