//! Source sync's rules (issue 13): what a source's configuration may say, how a pulled item becomes
//! a record (its key, truncated fields, content hash) or a quarantined item, and the per-host
//! circuit breaker. No I/O: the fetching lives in the server.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ValidationErrors;

/// The longest string field kept whole (bytes); longer ones are truncated and the truncation audited.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 32 * 1024;
/// The largest record (serialized, after truncation); larger ones are quarantined.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The longest record key.
pub const MAX_KEY_CHARS: usize = 512;

/// How a source's pages follow one another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One page.
    #[default]
    None,
    /// The next page's URL is at the pointer `next` of the body; absent or null ends.
    NextLink { next: String },
    /// The next page's URL is the `Link` header's `rel="next"` (RFC 8288); none ends.
    LinkHeader,
    /// The value at the pointer `next` is sent back as the query parameter `param`; absent, null
    /// or empty ends.
    Cursor { param: String, next: String },
    /// The query parameter `param` counts pages from `start`; an empty page ends.
    Page {
        param: String,
        #[serde(default)]
        start: i64,
    },
}

/// The configuration of an `http_json` source, as stored (header values sealed apart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpJsonConfig {
    /// The first page's URL (`http` or `https`).
    pub url: String,
    /// JSON pointer to the array of items in a page (`""`: the body is the array).
    pub items: String,
    /// JSON pointer, inside an item, to its key (a string or an integer).
    pub key: String,
    /// The type recorded with each item (`device`, `vulnerability`…).
    pub record_type: String,
    #[serde(default)]
    pub pagination: Pagination,
    /// The longest string field kept whole, in bytes (default 32 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_field_bytes: Option<u32>,
    /// Milliseconds one request may take (default from `[sync] request_timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// Kinds of source.
pub const KINDS: &[&str] = &["http_json"];

/// A JSON pointer (RFC 6901): empty, or `/`-separated tokens with `~0`/`~1` escapes only.
pub fn pointer_problem(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        return None;
    }
    if !p.starts_with('/') {
        return Some("must be a JSON pointer: empty or starting with '/'");
    }
    let bytes = p.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')) {
            return Some("'~' must be followed by 0 or 1 in a JSON pointer");
        }
    }
    if p.len() > 256 {
        return Some("must be at most 256 characters");
    }
    None
}

/// A record type or query parameter name: 1–64 of `[A-Za-z0-9_.-]`.
fn token_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 64 {
        return Some("must be 1 to 64 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Some("may hold only letters, digits, '_', '.' and '-'");
    }
    None
}

impl HttpJsonConfig {
    /// Checks what needs no URL parser (the server checks the URL and headers), each problem
    /// named by its field under `prefix`.
    pub fn check(&self, prefix: &str, errors: &mut ValidationErrors) {
        let f = |name: &str| format!("{prefix}.{name}");
        if let Some(p) = pointer_problem(&self.items) {
            errors.push(f("items"), p);
        }
        if self.key.is_empty() {
            errors.push(f("key"), "must point inside an item (e.g. /id)");
        } else if let Some(p) = pointer_problem(&self.key) {
            errors.push(f("key"), p);
        }
        if let Some(p) = token_problem(&self.record_type) {
            errors.push(f("record_type"), p);
        }
        match &self.pagination {
            Pagination::None | Pagination::LinkHeader => {}
            Pagination::NextLink { next } => {
                if next.is_empty() {
                    errors.push(
                        f("pagination.next"),
                        "must point into the body (e.g. /next)",
                    );
                } else if let Some(p) = pointer_problem(next) {
                    errors.push(f("pagination.next"), p);
                }
            }
            Pagination::Cursor { param, next } => {
                if let Some(p) = token_problem(param) {
                    errors.push(f("pagination.param"), p);
                }
                if next.is_empty() {
                    errors.push(
                        f("pagination.next"),
                        "must point into the body (e.g. /cursor)",
                    );
                } else if let Some(p) = pointer_problem(next) {
                    errors.push(f("pagination.next"), p);
                }
            }
            Pagination::Page { param, start } => {
                if let Some(p) = token_problem(param) {
                    errors.push(f("pagination.param"), p);
                }
                if *start < 0 {
                    errors.push(f("pagination.start"), "must not be negative");
                }
            }
        }
        if let Some(m) = self.max_field_bytes
            && !(16..=(DEFAULT_MAX_RECORD_BYTES as u32)).contains(&m)
        {
            errors.push(f("max_field_bytes"), "must be between 16 and 1048576");
        }
        if let Some(t) = self.timeout_ms
            && !(100..=300_000).contains(&t)
        {
            errors.push(f("timeout_ms"), "must be between 100 and 300000");
        }
    }

    pub fn max_field_bytes(&self) -> usize {
        self.max_field_bytes
            .map_or(DEFAULT_MAX_FIELD_BYTES, |m| m as usize)
    }
}

/// A string field cut to the limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// JSON pointer to the field inside the record.
    pub field: String,
    pub original_bytes: usize,
    pub kept_bytes: usize,
}

/// What one pulled item became.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Record(Record),
    Quarantined {
        key: Option<String>,
        reason: String,
        /// The start of the item as received (at most [`EXCERPT_BYTES`]).
        excerpt: String,
    },
}

/// The most of a quarantined item kept with it.
pub const EXCERPT_BYTES: usize = 1024;

fn excerpt_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES + 4)]);
    let mut cut = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

fn excerpt(v: &Value) -> String {
    excerpt_of(&serde_json::to_vec(v).unwrap_or_default())
}

/// An item ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub key: String,
    pub data: Value,
    /// Hex SHA-256 of the stored JSON: the same content gives the same hash.
    pub hash: String,
    pub truncations: Vec<Truncation>,
}

/// Limits applied to each item.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_field_bytes: usize,
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Reads one item: its key at `key_pointer`, long strings truncated, its hash; or why it is
/// quarantined (not an object, no usable key, too large).
pub fn read_item(mut item: Value, key_pointer: &str, limits: Limits) -> Item {
    if !item.is_object() {
        return Item::Quarantined {
            key: None,
            reason: format!("the item is {}, not an object", kind_of(&item)),
            excerpt: excerpt(&item),
        };
    }
    let key = match item.pointer(key_pointer) {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_KEY_CHARS => s.clone(),
        Some(Value::String(s)) if s.is_empty() => {
            return Item::Quarantined {
                key: None,
                reason: format!("the key at {key_pointer} is empty"),
                excerpt: excerpt(&item),
            };
        }
        Some(Value::String(s)) => {
            return Item::Quarantined {
                key: Some(s.chars().take(64).collect()),
                reason: format!(
                    "the key at {key_pointer} is longer than {MAX_KEY_CHARS} characters"
                ),
                excerpt: excerpt(&item),
            };
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(other) => {
            return Item::Quarantined {
                key: None,
                reason: format!(
                    "the key at {key_pointer} is {}, not a string or an integer",
                    kind_of(other)
                ),
                excerpt: excerpt(&item),
            };
        }
        None => {
            return Item::Quarantined {
                key: None,
                reason: format!("the item has no key at {key_pointer}"),
                excerpt: excerpt(&item),
            };
        }
    };
    let mut truncations = Vec::new();
    let mut path = String::new();
    truncate(
        &mut item,
        limits.max_field_bytes,
        &mut path,
        &mut truncations,
    );
    let bytes = match serde_json::to_vec(&item) {
        Ok(b) => b,
        Err(e) => {
            return Item::Quarantined {
                key: Some(key),
                reason: format!("the item cannot be serialized: {e}"),
                excerpt: String::new(),
            };
        }
    };
    if bytes.len() > limits.max_record_bytes {
        return Item::Quarantined {
            key: Some(key),
            reason: format!(
                "the record is {} bytes, over the {} byte limit",
                bytes.len(),
                limits.max_record_bytes
            ),
            excerpt: excerpt_of(&bytes),
        };
    }
    Record {
        key,
        hash: hex(&Sha256::digest(&bytes)),
        data: item,
        truncations,
    }
    .into()
}

impl From<Record> for Item {
    fn from(r: Record) -> Self {
        Item::Record(r)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

fn truncate(v: &mut Value, max: usize, path: &mut String, out: &mut Vec<Truncation>) {
    match v {
        Value::String(s) if s.len() > max => {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(Truncation {
                field: if path.is_empty() {
                    "/".into()
                } else {
                    path.clone()
                },
                original_bytes: s.len(),
                kept_bytes: cut,
            });
            s.truncate(cut);
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                truncate(item, max, path, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let len = path.len();
                path.push('/');
                path.push_str(&escape_token(k));
                truncate(item, max, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// JSON merge patch (RFC 7396) of `patch` onto `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// A run's progress, saved with each page: where the next page is and what was counted so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next page's URL; `None` once the last page is stored.
    pub next: Option<String>,
    /// The next page number (`page` pagination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    pub counts: RunCounts,
}

/// What a run has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunCounts {
    pub pages: u64,
    pub upserted: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub quarantined: u64,
    pub truncated: u64,
}

/// The state of a run, as shown in its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    /// An attempt failed; another follows (after backoff).
    Failed,
    /// Every attempt failed: the run is a dead letter of the job engine.
    Dead,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "dead" => RunStatus::Dead,
            _ => return None,
        })
    }
}

/// When a circuit breaker lets requests through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub threshold: u32,
    /// How long it stays open before one trial request.
    pub cooldown: Duration,
}

/// A circuit breaker over one upstream host: closed (requests pass), open after `threshold`
/// consecutive failures (requests refused until the cooldown passes), then half-open (one trial:
/// success closes it, failure opens it again).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    /// Open until this instant (`Duration` since an arbitrary origin the caller keeps).
    open_until: Option<Duration>,
    trial_out: bool,
}

impl Breaker {
    /// Whether a request may go now; `Err(wait)` while the circuit is open.
    pub fn allow(&mut self, now: Duration) -> Result<(), Duration> {
        match self.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until - now),
            Some(_) if self.trial_out => Err(Duration::from_secs(1)),
            Some(_) => {
                self.trial_out = true;
                Ok(())
            }
        }
    }

    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    pub fn failure(&mut self, now: Duration, policy: BreakerPolicy) {
        self.failures = self.failures.saturating_add(1);
        self.trial_out = false;
        if self.open_until.is_some() || self.failures >= policy.threshold {
            self.open_until = Some(now + policy.cooldown);
        }
    }

    /// Closed: no failure streak has opened it (requests pass without a trial).
    pub fn is_closed(&self) -> bool {
        self.open_until.is_none()
    }

    /// Gives back a trial taken by `allow` but not used (nothing was sent).
    pub fn release_trial(&mut self) {
        self.trial_out = false;
    }

    pub fn is_open(&self, now: Duration) -> bool {
        self.open_until.is_some_and(|u| now < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn pointers_are_checked() {
        assert_eq!(pointer_problem(""), None);
        assert_eq!(pointer_problem("/items/0"), None);
        assert_eq!(pointer_problem("/a~1b~0"), None);
        assert!(pointer_problem("items").is_some());
        assert!(pointer_problem("/a~2").is_some());
    }

    #[test]
    fn config_problems_name_their_fields() {
        let c = HttpJsonConfig {
            url: "https://x".into(),
            items: "items".into(),
            key: "".into(),
            record_type: "no spaces".into(),
            pagination: Pagination::Cursor {
                param: "".into(),
                next: "".into(),
            },
            max_field_bytes: Some(1),
            timeout_ms: Some(1),
        };
        let mut e = ValidationErrors::default();
        c.check("config", &mut e);
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        for f in [
            "config.items",
            "config.key",
            "config.record_type",
            "config.pagination.param",
            "config.pagination.next",
            "config.max_field_bytes",
            "config.timeout_ms",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn pagination_reads_each_style() {
        let p: Pagination =
            serde_json::from_value(json!({"style": "cursor", "param": "c", "next": "/n"})).unwrap();
        assert_eq!(
            p,
            Pagination::Cursor {
                param: "c".into(),
                next: "/n".into()
            }
        );
        let p: Pagination = serde_json::from_value(json!({"style": "page", "param": "p"})).unwrap();
        assert_eq!(
            p,
            Pagination::Page {
                param: "p".into(),
                start: 0
            }
        );
        assert!(serde_json::from_value::<Pagination>(json!({"style": "scroll"})).is_err());
    }

    #[test]
    fn items_become_records_or_quarantines() {
        let l = Limits::default();
        let Item::Record(r) = read_item(json!({"id": 7, "n": "x"}), "/id", l) else {
            panic!()
        };
        assert_eq!(r.key, "7");
        assert!(r.truncations.is_empty());
        // same content, same hash, whatever the key order
        let Item::Record(r2) = read_item(json!({"n": "x", "id": 7}), "/id", l) else {
            panic!()
        };
        assert_eq!(r.hash, r2.hash);
        for (item, why) in [
            (json!([1]), "not an object"),
            (json!({"x": 1}), "no key"),
            (json!({"id": 1.5}), "not a string or an integer"),
            (json!({"id": ""}), "empty"),
        ] {
            match read_item(item, "/id", l) {
                Item::Quarantined { reason, .. } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn long_fields_are_truncated_and_huge_records_quarantined() {
        let l = Limits {
            max_field_bytes: 8,
            max_record_bytes: 100,
        };
        let Item::Record(r) = read_item(
            json!({"id": "a", "notes": ["ok", "éééééééé"], "d/x": "0123456789"}),
            "/id",
            l,
        ) else {
            panic!()
        };
        assert_eq!(r.data["notes"][1], "éééé");
        assert_eq!(r.data["d/x"], "01234567");
        let fields: Vec<_> = r.truncations.iter().map(|t| t.field.as_str()).collect();
        assert_eq!(fields, ["/d~1x", "/notes/1"]);
        assert_eq!(r.truncations[1].original_bytes, 16);
        let big: Vec<_> = (0..50).map(|i| json!(i)).collect();
        match read_item(json!({"id": "a", "big": big}), "/id", l) {
            Item::Quarantined { key, reason, .. } => {
                assert_eq!(key.as_deref(), Some("a"));
                assert!(reason.contains("byte limit"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut t, &json!(["x"]));
        assert_eq!(t, json!(["x"]));
    }

    #[test]
    fn breaker_opens_cools_and_closes() {
        let p = BreakerPolicy {
            threshold: 3,
            cooldown: Duration::from_secs(10),
        };
        let mut b = Breaker::default();
        let t = Duration::from_secs;
        for _ in 0..2 {
            b.failure(t(0), p);
        }
        assert!(b.allow(t(0)).is_ok());
        b.failure(t(0), p);
        assert_eq!(b.allow(t(4)), Err(t(6)));
        // half-open: one trial only
        assert!(b.allow(t(10)).is_ok());
        assert!(b.allow(t(10)).is_err());
        b.failure(t(10), p);
        assert!(b.is_open(t(19)));
        assert!(b.allow(t(20)).is_ok());
        b.success();
        assert!(b.allow(t(20)).is_ok() && !b.is_open(t(20)));
    }

    proptest! {
        #[test]
        fn truncated_records_respect_the_limit(
            s in "\\PC{0,200}",
            max in 16usize..64,
        ) {
            let l = Limits { max_field_bytes: max, max_record_bytes: 1 << 20 };
            let Item::Record(r) = read_item(json!({"id": "k", "s": s.clone()}), "/id", l) else {
                panic!()
            };
            let kept = r.data["s"].as_str().unwrap();
            prop_assert!(kept.len() <= max);
            prop_assert!(s.starts_with(kept));
            prop_assert_eq!(r.truncations.len(), usize::from(s.len() > max));
        }
    }
}
