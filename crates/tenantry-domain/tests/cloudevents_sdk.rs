//! The platform's CloudEvents read by an independent implementation: the CloudEvents Python SDK
//! (PyPI `cloudevents`, which validates attribute names, types and the `specversion`) parses
//! every envelope shape we produce, and reads back the attributes we wrote.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tenantry_domain::event::{EventEnvelope, cloud_event_source};
use tenantry_domain::{EditionKey, TenantId};

const READER: &str = r#"
import json, sys
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
out = []
for line in sys.stdin:
    e = JSONFormat().read(CloudEvent, line.strip())
    attrs = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in e.get_attributes().items()}
    out.append({"attributes": attrs, "data": e.get_data()})
print(json.dumps(out))
"#;

fn sdk_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cloudevents.core.formats.json"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the CloudEvents SDK is missing: pip install cloudevents"
        );
        eprintln!("skipped: pip install cloudevents");
    }
    ok
}

#[test]
fn the_cloudevents_sdk_reads_every_envelope_we_write() {
    if !sdk_available() {
        return;
    }
    let tenant = TenantId::new();
    let envelopes = [
        EventEnvelope::v1(
            "tenant.created.v1",
            tenant.to_string(),
            Some(tenant),
            Some(EditionKey::free()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            chrono::Utc::now(),
            json!({"slug": "acme", "name": "Ünïcödé ☃", "nested": {"n": [1, 2.5, null, true]}}),
        ),
        // a platform event: no tenant, no edition, no trace
        EventEnvelope::v1(
            "edition.created.v1",
            "gold",
            None,
            None,
            None,
            chrono::Utc::now(),
            json!({}),
        ),
    ];
    let source = cloud_event_source("api-1");
    let events: Vec<Value> = envelopes
        .iter()
        .map(|e| serde_json::to_value(e.to_cloud_event(&source)).unwrap())
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = child.stdin.as_mut().unwrap();
        for e in &events {
            writeln!(stdin, "{e}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the SDK refused our events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read.len(), events.len());
    for (ours, theirs) in events.iter().zip(&read) {
        let attrs = &theirs["attributes"];
        for name in [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "datacontenttype",
            "tenantid",
            "edition",
            "traceparent",
            "schemaversion",
            "partitionkey",
        ] {
            assert_eq!(attrs.get(name), ours.get(name), "{name} in {theirs}");
        }
        let time = chrono::DateTime::parse_from_rfc3339(attrs["time"].as_str().unwrap()).unwrap();
        let ours_time =
            chrono::DateTime::parse_from_rfc3339(ours["time"].as_str().unwrap()).unwrap();
        assert_eq!(time, ours_time);
        assert_eq!(theirs["data"], ours["data"]);
    }
}
