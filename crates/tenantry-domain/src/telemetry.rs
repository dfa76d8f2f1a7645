//! Device telemetry: what an event is, and the rules each event of a batch is checked against on
//! its own (a bad event is rejected with its index and a reason; the others go on). Pure: the
//! caller supplies the time and the oldest instant the tenant's retention keeps.
//!
//! An event: `event_id` (the client's, 1–128 visible ASCII characters; `(tenant, event_id)` is
//! what makes a retry a duplicate), `device_id`, `type` (`temperature`), a `value` (number), and/or
//! `values` (an object of numbers), and/or a `payload` (an object, size-limited), and
//! `recorded_at` (RFC 3339, the device's clock).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The limits an event is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelemetryRules {
    /// How far ahead of the server's clock `recorded_at` may be (device clocks drift).
    pub max_future_skew: Duration,
    /// Largest `payload`, as compact JSON.
    pub max_payload_bytes: usize,
    /// Most entries in `values`.
    pub max_values: usize,
}

impl Default for TelemetryRules {
    fn default() -> Self {
        Self {
            max_future_skew: Duration::minutes(5),
            max_payload_bytes: 16 * 1024,
            max_values: 64,
        }
    }
}

/// A checked event, as stored (`received_at` is stamped by the server when it is accepted).
/// Its serialized form is also an archive line's (with `received_at`).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct TelemetryEvent {
    pub event_id: String,
    pub device_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Map<String, Value>>,
    pub recorded_at: DateTime<Utc>,
}

/// Why an event was not accepted: its `type` in the answer's `rejected` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// Not an event: a missing, unknown or ill-formed field, or a line that is not JSON.
    InvalidEvent,
    /// `recorded_at` is further ahead of the server's clock than the allowed skew.
    RecordedInTheFuture,
    /// `recorded_at` is older than the tenant's retention keeps.
    OlderThanRetention,
    /// A device key sent an event of another device.
    WrongDevice,
    /// The device is not registered, and this tenant does not register devices on first event.
    UnknownDevice,
}

/// One rejected event of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Its position in the batch (the array index, or the line among the non-blank lines).
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: RejectionKind,
    pub detail: String,
}

/// The fields of an event as sent (anything else is refused, so typos do not pass).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    event_id: String,
    device_id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    values: Option<Map<String, Value>>,
    #[serde(default)]
    payload: Option<Value>,
    recorded_at: String,
}

/// A device id: 1–128 letters, digits, `.`, `_`, `:` or `-` (the tenant's own name for it).
pub fn valid_device_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// An event id: 1–128 visible ASCII characters.
pub fn valid_event_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A type or a `values` key: 1–64 letters, digits, `.`, `_`, `:` or `-`.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn finite(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

type Refused = (RejectionKind, String);

fn invalid(detail: impl Into<String>) -> Refused {
    (RejectionKind::InvalidEvent, detail.into())
}

/// Checks one event. `oldest` is the oldest `recorded_at` the tenant's retention keeps.
pub fn check_event(
    raw: &Value,
    now: DateTime<Utc>,
    oldest: DateTime<Utc>,
    rules: &TelemetryRules,
) -> Result<TelemetryEvent, Refused> {
    if !raw.is_object() {
        return Err(invalid("an event is a JSON object"));
    }
    let e: RawEvent = RawEvent::deserialize(raw).map_err(|e| invalid(e.to_string()))?;
    if !valid_event_id(&e.event_id) {
        return Err(invalid("event_id: 1 to 128 visible ASCII characters"));
    }
    if !valid_device_id(&e.device_id) {
        return Err(invalid(
            "device_id: 1 to 128 letters, digits, '.', '_', ':' or '-'",
        ));
    }
    if !valid_name(&e.event_type) {
        return Err(invalid(
            "type: 1 to 64 letters, digits, '.', '_', ':' or '-'",
        ));
    }
    let value = match &e.value {
        None | Some(Value::Null) => None,
        Some(v) => Some(finite(v).ok_or_else(|| invalid("value: a number"))?),
    };
    let mut values = BTreeMap::new();
    if let Some(map) = &e.values {
        if map.len() > rules.max_values {
            return Err(invalid(format!(
                "values: at most {} entries",
                rules.max_values
            )));
        }
        for (k, v) in map {
            if !valid_name(k) {
                return Err(invalid(format!(
                    "values: '{}' is not a name of 1 to 64 letters, digits, '.', '_', ':' or '-'",
                    k.chars().take(64).collect::<String>()
                )));
            }
            let n = finite(v).ok_or_else(|| invalid(format!("values.{k}: a number")))?;
            values.insert(k.clone(), n);
        }
    }
    let payload = match e.payload {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            let size = serde_json::to_vec(&map).map_or(usize::MAX, |b| b.len());
            if size > rules.max_payload_bytes {
                return Err(invalid(format!(
                    "payload: at most {} bytes of JSON (this one is {size})",
                    rules.max_payload_bytes
                )));
            }
            Some(map)
        }
        Some(_) => return Err(invalid("payload: an object")),
    };
    if value.is_none() && values.is_empty() && payload.is_none() {
        return Err(invalid("an event carries a value, values or a payload"));
    }
    let recorded_at = DateTime::parse_from_rfc3339(&e.recorded_at)
        .map_err(|err| invalid(format!("recorded_at: not an RFC 3339 time ({err})")))?
        .with_timezone(&Utc);
    if recorded_at > now + rules.max_future_skew {
        return Err((
            RejectionKind::RecordedInTheFuture,
            format!(
                "recorded_at {} is more than {} s ahead of the server's clock ({})",
                recorded_at.to_rfc3339(),
                rules.max_future_skew.num_seconds(),
                now.to_rfc3339()
            ),
        ));
    }
    if recorded_at < oldest {
        return Err((
            RejectionKind::OlderThanRetention,
            format!(
                "recorded_at {} is older than the tenant's retention keeps (from {})",
                recorded_at.to_rfc3339(),
                oldest.to_rfc3339()
            ),
        ));
    }
    Ok(TelemetryEvent {
        event_id: e.event_id,
        device_id: e.device_id,
        event_type: e.event_type,
        value,
        values,
        payload,
        recorded_at,
    })
}

/// The events of an NDJSON body, one per non-blank line, each parsed on its own: a line that is
/// not JSON is refused by itself and the others go on.
pub fn ndjson_events(body: &str) -> Vec<Result<Value, String>> {
    body.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).map_err(|e| format!("not a JSON line: {e}")))
        .collect()
}

/// A batch, checked event by event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckedBatch {
    /// The events to store, with their index in the batch.
    pub accepted: Vec<(usize, TelemetryEvent)>,
    /// Repeats of an `event_id` earlier in the same batch (the first one counts).
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

/// Checks each event of a batch (parsed, or refused at parsing) on its own.
pub fn check_batch(
    events: Vec<Result<Value, String>>,
    now: DateTime<Utc>,
    oldest: DateTime<Utc>,
    rules: &TelemetryRules,
) -> CheckedBatch {
    let mut out = CheckedBatch::default();
    let mut seen = HashSet::new();
    for (index, raw) in events.into_iter().enumerate() {
        let checked = raw
            .map_err(invalid)
            .and_then(|v| check_event(&v, now, oldest, rules));
        match checked {
            Ok(e) if !seen.insert(e.event_id.clone()) => out.duplicates += 1,
            Ok(e) => out.accepted.push((index, e)),
            Err((kind, detail)) => out.rejected.push(Rejection {
                index,
                kind,
                detail,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-12-06T12:00:00Z".parse().unwrap()
    }

    fn oldest() -> DateTime<Utc> {
        now() - Duration::days(7)
    }

    fn event() -> Value {
        json!({
            "event_id": "e-1", "device_id": "meter-7", "type": "temperature",
            "value": 21.5, "recorded_at": "2026-12-06T11:59:00+01:00"
        })
    }

    fn check(v: &Value) -> Result<TelemetryEvent, Refused> {
        check_event(v, now(), oldest(), &TelemetryRules::default())
    }

    fn refused(v: Value) -> (RejectionKind, String) {
        check(&v).expect_err("refused")
    }

    fn with(field: &str, value: Value) -> Value {
        let mut e = event();
        e[field] = value;
        e
    }

    #[test]
    fn a_valid_event_is_read_in_utc() {
        let e = check(&event()).unwrap();
        assert_eq!(e.event_id, "e-1");
        assert_eq!(e.value, Some(21.5));
        assert_eq!(
            e.recorded_at,
            "2026-12-06T10:59:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let full = json!({
            "event_id": "e-2", "device_id": "meter-7", "type": "power",
            "values": {"l1": 230.1, "l2": 229}, "payload": {"firmware": "1.2"},
            "recorded_at": "2026-12-06T11:00:00Z"
        });
        let e = check(&full).unwrap();
        assert_eq!(e.value, None);
        assert_eq!(e.values["l2"], 229.0);
        assert_eq!(e.payload.unwrap()["firmware"], "1.2");
    }

    #[test]
    fn ill_formed_events_are_invalid_with_a_reason() {
        let long = "x".repeat(129);
        let cases = [
            (json!([1, 2]), "object"),
            (with("event_id", json!("")), "event_id"),
            (with("event_id", json!(long)), "event_id"),
            (with("event_id", json!("a b")), "event_id"),
            (with("device_id", json!("meter/7")), "device_id"),
            (with("type", json!("")), "type"),
            (with("value", json!("21.5")), "value"),
            (with("values", json!({"l1": "x"})), "values.l1"),
            (with("values", json!({"bad key": 1})), "values"),
            (with("payload", json!([1])), "payload"),
            (with("payload", json!({"x": "y".repeat(20_000)})), "payload"),
            (with("recorded_at", json!("yesterday")), "recorded_at"),
            (with("extra", json!(1)), "unknown field"),
            (
                json!({"event_id": "e", "device_id": "d", "type": "t", "recorded_at": "2026-12-06T11:00:00Z"}),
                "value, values or a payload",
            ),
            (json!({"device_id": "d"}), "missing field"),
        ];
        for (v, says) in cases {
            let (kind, detail) = refused(v.clone());
            assert_eq!(kind, RejectionKind::InvalidEvent, "{v}");
            assert!(detail.contains(says), "{v}: {detail}");
        }
        let many: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(
            refused(with("values", Value::Object(many)))
                .1
                .contains("at most 64")
        );
    }

    #[test]
    fn time_is_checked_against_skew_and_retention() {
        let ahead = with("recorded_at", json!("2026-12-06T12:04:59Z"));
        assert!(check(&ahead).is_ok(), "within the allowed skew");
        let (kind, _) = refused(with("recorded_at", json!("2026-12-06T12:05:01Z")));
        assert_eq!(kind, RejectionKind::RecordedInTheFuture);
        let (kind, detail) = refused(with("recorded_at", json!("2026-11-28T12:00:00Z")));
        assert_eq!(kind, RejectionKind::OlderThanRetention);
        assert!(detail.contains("2026-11-29"), "{detail}");
    }

    #[test]
    fn a_batch_keeps_going_past_bad_events_and_counts_repeats() {
        let body = format!(
            "{}\n\n{{not json\n{}\n{}\r\n",
            event(),
            with("event_id", json!("e-2")),
            event()
        );
        let lines = ndjson_events(&body);
        assert_eq!(lines.len(), 4, "blank lines are skipped");
        let b = check_batch(lines, now(), oldest(), &TelemetryRules::default());
        assert_eq!(
            b.accepted
                .iter()
                .map(|(i, e)| (*i, e.event_id.as_str()))
                .collect::<Vec<_>>(),
            vec![(0, "e-1"), (2, "e-2")]
        );
        assert_eq!(b.duplicates, 1, "the second e-1 is a duplicate");
        assert_eq!(b.rejected.len(), 1);
        assert_eq!(b.rejected[0].index, 1);
        assert_eq!(b.rejected[0].kind, RejectionKind::InvalidEvent);
        let shown = serde_json::to_value(&b.rejected[0]).unwrap();
        assert_eq!(shown["type"], "invalid_event");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("event_id".to_owned()),
                        Just("device_id".to_owned()),
                        Just("type".to_owned()),
                        Just("value".to_owned()),
                        Just("values".to_owned()),
                        Just("payload".to_owned()),
                        Just("recorded_at".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_is_checked_without_panicking(v in arb_json()) {
            let _ = check(&v);
        }

        #[test]
        fn any_ndjson_body_is_split_without_panicking(body in "\\PC{0,200}") {
            let lines = ndjson_events(&body);
            let b = check_batch(lines, now(), oldest(), &TelemetryRules::default());
            prop_assert!(b.accepted.len() + b.rejected.len() + b.duplicates <= body.lines().count());
        }

        #[test]
        fn accepted_events_keep_their_fields(id in "[!-~]{1,128}", v in -1e9f64..1e9) {
            let e = with("event_id", json!(id));
            let e = check(&with_value(e, v)).unwrap();
            prop_assert_eq!(e.event_id, id);
            prop_assert_eq!(e.value, Some(v));
        }
    }

    fn with_value(mut e: Value, v: f64) -> Value {
        e["value"] = json!(v);
        e
    }
}
