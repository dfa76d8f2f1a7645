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
