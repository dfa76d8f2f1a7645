//! The domain event envelope (CloudEvents-style) written to the transactional outbox.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::edition::EditionKey;
use crate::id::{EventId, TenantId};

/// Where events from this platform say they come from.
pub const EVENT_SOURCE: &str = "tenantry";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: EventId,
    /// `<resource>.<verb>.v<N>`, e.g. `tenant.created.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub time: DateTime<Utc>,
    pub tenant_id: Option<TenantId>,
    pub edition: Option<EditionKey>,
    pub trace_id: Option<String>,
    pub schema_version: u32,
    /// Partition / ordering key (the aggregate id).
    pub key: String,
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// A version-1 event about one aggregate.
    pub fn v1(
        event_type: &str,
        key: impl Into<String>,
        tenant_id: Option<TenantId>,
        edition: Option<EditionKey>,
        trace_id: Option<String>,
        time: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        debug_assert!(
            event_type.ends_with(".v1"),
            "event types carry their version"
        );
        Self {
            id: EventId::new(),
            event_type: event_type.to_owned(),
            source: EVENT_SOURCE.to_owned(),
            time,
            tenant_id,
            edition,
            trace_id,
            schema_version: 1,
            key: key.into(),
            data,
        }
    }
}

/// CloudEvents' `specversion`.
pub const CLOUDEVENTS_VERSION: &str = "1.0";

/// The `source` of the platform's CloudEvents: `/tenantry/<instance or service>`.
pub fn cloud_event_source(instance: &str) -> String {
    format!("/{EVENT_SOURCE}/{instance}")
}

/// An event in CloudEvents 1.0's structured JSON format, with tenantry's extension attributes
/// (lower-case alphanumeric names, as the specification requires): `tenantid`, `edition`,
/// `traceparent` (the distributed-tracing extension), `schemaversion` and `partitionkey`
/// (the ordering key: the tenant, or `platform` for an event of no tenant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339 in UTC with microseconds (what the store keeps, and what every reader parses).
    #[serde(serialize_with = "rfc3339_micros")]
    pub time: DateTime<Utc>,
    /// The resource the event is about (its id).
    pub subject: String,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenantid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traceparent: Option<String>,
    pub schemaversion: u32,
    pub partitionkey: String,
    /// The event's position in the platform's event log (CloudEvents' sequence extension: a
    /// decimal number, zero-padded to 20 digits so that it also orders as text). Absent on an
    /// event not yet in the log.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sequence: Option<String>,
}

/// The partition key of an event of no tenant.
pub const PLATFORM_PARTITION: &str = "platform";

impl EventEnvelope {
    /// The envelope as a CloudEvent from `source` ([`cloud_event_source`]). Every stored
    /// envelope has this form, old outbox rows included: the fields map one to one, and the
    /// `traceparent` is built from the stored trace id with the event's own id as its parent span
    /// (the outbox keeps the trace, not the span that wrote it).
    pub fn to_cloud_event(&self, source: &str) -> CloudEvent {
        let tenant = self.tenant_id.map(|t| t.to_string());
        CloudEvent {
            specversion: CLOUDEVENTS_VERSION.to_owned(),
            id: self.id.to_string(),
            source: source.to_owned(),
            event_type: self.event_type.clone(),
            time: crate::clock::to_stored_precision(self.time),
            subject: self.key.clone(),
            datacontenttype: "application/json".to_owned(),
            data: self.data.clone(),
            partitionkey: tenant
                .clone()
                .unwrap_or_else(|| PLATFORM_PARTITION.to_owned()),
            tenantid: tenant,
            edition: self.edition.as_ref().map(|e| e.as_str().to_owned()),
            traceparent: self
                .trace_id
                .as_deref()
                .and_then(|t| traceparent(t, self.id)),
            schemaversion: self.schema_version,
            sequence: None,
        }
    }

    /// The envelope as a CloudEvent at position `seq` of the event log.
    pub fn to_logged_cloud_event(&self, source: &str, seq: i64) -> CloudEvent {
        CloudEvent {
            sequence: Some(sequence_attribute(seq)),
            ..self.to_cloud_event(source)
        }
    }
}

/// The `sequence` attribute of position `seq`.
pub fn sequence_attribute(seq: i64) -> String {
    format!("{seq:020}")
}

fn rfc3339_micros<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// `00-<trace id>-<span id>-01`, the span id taken from the event id's random bits; `None` for a
/// trace id that is not 32 lower-case hex digits (not all zero).
fn traceparent(trace_id: &str, id: EventId) -> Option<String> {
    let valid = trace_id.len() == 32
        && trace_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && trace_id.bytes().any(|b| b != b'0');
    if !valid {
        return None;
    }
    let bytes = id.as_uuid().as_bytes();
    let mut span = [0u8; 8];
    span.copy_from_slice(&bytes[8..16]);
    if span == [0; 8] {
        span[7] = 1;
    }
    let hex: String = span.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("00-{trace_id}-{hex}-01"))
}

#[cfg(test)]
mod cloud_event_tests {
    use super::*;
    use serde_json::json;

    fn envelope(tenant: Option<TenantId>, trace: Option<&str>) -> EventEnvelope {
        EventEnvelope::v1(
            "device.created.v1",
            "meter-1",
            tenant,
            tenant.map(|_| EditionKey::free()),
            trace.map(str::to_owned),
            DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap(),
            json!({"device_id": "meter-1"}),
        )
    }

    #[test]
    fn envelopes_map_to_cloud_events() {
        let t = TenantId::new();
        let e = envelope(Some(t), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let c = e.to_cloud_event(&cloud_event_source("api-1"));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], e.id.to_string());
        assert_eq!(v["source"], "/tenantry/api-1");
        assert_eq!(v["type"], "device.created.v1");
        assert_eq!(v["time"], "2025-12-06T05:46:40.123456Z");
        assert_eq!(v["subject"], "meter-1");
        assert_eq!(v["tenantid"], t.to_string());
        assert_eq!(v["partitionkey"], t.to_string());
        assert_eq!(v["edition"], "free");
        assert_eq!(v["schemaversion"], 1);
        let tp = v["traceparent"].as_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"));
        assert_eq!(tp.len(), 55);
        // and back
        let back: CloudEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn platform_events_and_bad_trace_ids() {
        let c = envelope(None, Some("not-a-trace")).to_cloud_event("/tenantry/x");
        assert_eq!(c.partitionkey, PLATFORM_PARTITION);
        assert!(c.tenantid.is_none() && c.traceparent.is_none());
        let v = serde_json::to_value(&c).unwrap();
        assert!(v.get("tenantid").is_none() && v.get("traceparent").is_none());
        assert!(
            envelope(None, Some(&"0".repeat(32)))
                .to_cloud_event("/s")
                .traceparent
                .is_none()
        );
    }
}
