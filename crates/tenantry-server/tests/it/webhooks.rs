//! Webhooks over HTTP, delivered to a local receiver: signatures checked by the Standard Webhooks
//! reference library (Python `standardwebhooks`), retries with the same `webhook-id`,
//! `Retry-After` honoured, `410 Gone` disables, rotation signs with both secrets, filters and
//! wildcards, per-key order under failures, replay, the edition's limit, the egress guard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::config::Config;
use tenantry_server::testing::TestServer;

use crate::events::add_device;
use crate::support::{body, create_tenant, key_with_scopes, problem};

/// Deliveries on; retries fast; the loopback receiver reachable.
pub fn tweak(c: &mut Config) {
    c.egress.allow_private = true;
    c.webhooks.allow_http = true;
    c.webhooks.poll_ms = 50;
    c.webhooks.breaker_threshold = 3;
    c.webhooks.breaker_cooldown_seconds = 1;
}

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

/// A receiver on a loopback port. Paths choose its answer:
/// `/ok` 204; `/fail-N` 500 for each message's first N attempts, then 204; `/busy` 429 with
/// `Retry-After: 2` on each message's first attempt; `/gone` 410.
#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    pub port: u16,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let g = Arc::clone(&got);
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
                let g = Arc::clone(&g);
                async move {
                    let path = uri.path().to_owned();
                    let headers: HashMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let id = headers.get("webhook-id").cloned().unwrap_or_default();
                    let seen = {
                        let mut g = g.lock().unwrap();
                        let seen = g
                            .iter()
                            .filter(|r| r.headers.get("webhook-id") == Some(&id))
                            .count();
                        g.push(Received {
                            path: path.clone(),
                            headers,
                            body,
                            at: Instant::now(),
                        });
                        seen
                    };
                    let plain = |s: AxStatus| (s, HeaderMap::new(), "ok");
                    match path.as_str() {
                        "/gone" => plain(AxStatus::GONE),
                        "/busy" if seen == 0 => {
                            let mut h = HeaderMap::new();
                            h.insert("retry-after", "2".parse().unwrap());
                            (AxStatus::TOO_MANY_REQUESTS, h, "slow down")
                        }
                        p if p.starts_with("/fail-") => {
                            let n: usize = p[6..].parse().unwrap_or(0);
                            if seen < n {
                                (AxStatus::INTERNAL_SERVER_ERROR, HeaderMap::new(), "boom")
                            } else {
                                plain(AxStatus::NO_CONTENT)
                            }
                        }
                        _ => plain(AxStatus::NO_CONTENT),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { got, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn on(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got `n` requests (or `wait` passed).
    pub async fn wait_for(&self, path: &str, n: usize, wait: Duration) -> Vec<Received> {
        let deadline = Instant::now() + wait;
        loop {
            let got = self.on(path);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A tenant of `edition` and a key with webhooks and devices scopes.
async fn tenant(srv: &TestServer, name: &str, edition: &str) -> (String, String) {
    let t = create_tenant(srv, json!({"name": name, "edition": edition})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let key = key_with_scopes(
        srv,
        &id,
        &["webhooks:manage", "devices:manage", "events:read"],
    )
    .await;
    (id, key)
}

async fn subscribe(srv: &TestServer, key: &str, doc: Value) -> Value {
    let r = srv
        .with_key(key, Method::POST, "/v1/webhooks/subscriptions")
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    body(r).await
}

fn fast_policy() -> Value {
    json!({"timeout_ms": 2000, "max_attempts": 5, "max_age_seconds": 600,
           "backoff_initial_ms": 20, "backoff_max_ms": 200})
}

/// Checks signatures with the Standard Webhooks reference library: each delivery must verify
/// with `secret`.
fn verify_with_reference_library(secret: &str, got: &[Received]) {
    let items: Vec<Value> = got
        .iter()
        .map(|r| json!({"headers": r.headers, "body": r.body}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deliveries.json");
    std::fs::write(&file, serde_json::to_vec(&items).unwrap()).unwrap();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, path = sys.argv[1], sys.argv[2]
wh = Webhook(secret)
for d in json.load(open(path)):
    wh.verify(d["body"], d["headers"])
print("verified", len(json.load(open(path))))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, file.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !(err.contains("No module named") && std::env::var_os("CI").is_none()),
            "install the reference library: pip install standardwebhooks"
        );
        panic!("the Standard Webhooks library refused a delivery: {err}");
    }
}

/// Creation (secret once, validation, the edition's limit, the egress guard), then deliveries
/// verified by the reference library, with the documented headers; filters and wildcards pick
/// what each subscription gets; a test delivery.
pub async fn subscriptions_deliver_signed_filtered_events(srv: &TestServer) {
    let rx = Receiver::start().await;
    let (tenant_id, key) = tenant(srv, "Hooked", "free").await;
    // validation names each field
    let r = srv
        .with_key(&key, Method::POST, "/v1/webhooks/subscriptions")
        .json(
            &json!({"url": "ftp://x.example/", "event_types": ["Bad"], "filters": "edition ==",
                      "delivery_policy": {"max_attempts": 0}}),
        )
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "url",
        "event_types[0]",
        "filters",
        "delivery_policy.max_attempts",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    let created = subscribe(
        srv,
        &key,
        json!({"url": rx.url("/ok"), "event_types": ["device.*"],
               "filters": "subject in ['d-hot', 'd-warm'] or data.device_id == 'd-cold'",
               "delivery_policy": fast_policy()}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created["id"].as_str().unwrap().to_owned();
    // the secret is never shown again
    let shown = body(
        srv.with_key(
            &key,
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{id}"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(&secret));
    // free: one subscription
    let r = srv
        .with_key(&key, Method::POST, "/v1/webhooks/subscriptions")
        .json(&json!({"url": rx.url("/ok"), "event_types": ["*"]}))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::FORBIDDEN, "quota_exceeded").await;
    assert_eq!(p["type"], "urn:tenantry:problem:quota_exceeded");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("webhook_subscriptions = 1"),
        "{p}"
    );
    for d in ["d-hot", "d-skip", "d-warm", "d-cold"] {
        add_device(srv, &key, d).await;
    }
    let mut got = rx.wait_for("/ok", 3, Duration::from_secs(15)).await;
    // `ordering: none`: concurrent, so in any order
    got.sort_by_key(|r| {
        r.json()["sequence"]
            .as_str()
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap_or(0)
    });
    let subjects: Vec<String> = got
        .iter()
        .map(|r| r.json()["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, ["d-hot", "d-warm", "d-cold"], "the filter chose");
    let first = &got[0];
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["webhook-event-type"], "device.created.v1");
    assert_eq!(first.headers["webhook-tenant-id"], tenant_id);
    assert_eq!(first.headers["webhook-attempt"], "1");
    assert!(first.id().starts_with("msg_"));
    assert!(first.headers["traceparent"].starts_with("00-"));
    assert_eq!(first.json()["specversion"], "1.0");
    verify_with_reference_library(&secret, &got);
    // a test delivery, to this subscription only
    let r = srv
        .with_key(
            &key,
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{id}:test"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let got = rx.wait_for("/ok", 4, Duration::from_secs(10)).await;
    assert_eq!(got[3].headers["webhook-event-type"], "webhook.test.v1");
    verify_with_reference_library(&secret, &got[3..]);
    // the delivery log
    let log = body(
        srv.with_key(
            &key,
            Method::GET,
            &format!("/v1/webhooks/deliveries?subscription_id={id}&status=delivered"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(log["items"].as_array().unwrap().len(), 4, "{log}");
    assert_eq!(log["items"][0]["status_code"], 204);
}

/// The egress guard refuses every internal range on write (address literals), in each of its
/// spellings; and plain http is refused unless allowed.
pub async fn internal_destinations_are_refused_on_write(srv: &TestServer) {
    let (_, key) = tenant(srv, "Guarded", "enterprise").await;
    for url in [
        "https://127.0.0.1/h",
        "https://10.1.2.3/h",
        "https://172.16.0.1/h",
        "https://192.168.1.1/h",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/h",
        "https://224.0.0.1/h",
        "https://192.0.2.1/h",
        "https://198.51.100.7/h",
        "https://203.0.113.9/h",
        "https://0.0.0.0/h",
        "https://[::1]/h",
        "https://[fe80::1]/h",
        "https://[fc00::1]/h",
        "https://[::ffff:127.0.0.1]/h",
        "https://[64:ff9b::a00:1]/h",
        "https://[2002:a00:1::]/h",
        "https://[2001:db8::1]/h",
        "https://localhost/h",
    ] {
        let r = srv
            .with_key(&key, Method::POST, "/v1/webhooks/subscriptions")
            .json(&json!({"url": url, "event_types": ["*"]}))
            .send()
            .await
            .unwrap();
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            p["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{url}: {p}"
        );
    }
}

pub fn guarded_tweak(c: &mut Config) {
    c.webhooks.allow_http = false;
}

/// Retries until success with the same `webhook-id`; `Retry-After` honoured; `410` disables
/// (an audit record, a `webhook.subscription.disabled.v1` that another subscription receives).
pub async fn failures_retry_honour_retry_after_and_gone_disables(srv: &TestServer) {
    let rx = Receiver::start().await;
    let (_, key) = tenant(srv, "Flaky", "enterprise").await;
    let policy = fast_policy();
    subscribe(
        srv,
        &key,
        json!({"url": rx.url("/fail-2"), "event_types": ["device.*"], "delivery_policy": policy}),
    )
    .await;
    subscribe(
        srv,
        &key,
        json!({"url": rx.url("/busy"), "event_types": ["device.*"], "delivery_policy": policy}),
    )
    .await;
    let gone = subscribe(
        srv,
        &key,
        json!({"url": rx.url("/gone"), "event_types": ["device.*"], "delivery_policy": policy}),
    )
    .await;
    subscribe(
        srv,
        &key,
        json!({"url": rx.url("/ok"), "event_types": ["webhook.subscription.disabled.v1"]}),
    )
    .await;
    add_device(srv, &key, "d-1").await;
    let failing = rx.wait_for("/fail-2", 3, Duration::from_secs(15)).await;
    assert_eq!(failing.len(), 3);
    assert!(
        failing.iter().all(|r| r.id() == failing[0].id()),
        "one webhook-id"
    );
    let attempts: Vec<&str> = failing
        .iter()
        .map(|r| r.headers["webhook-attempt"].as_str())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let busy = rx.wait_for("/busy", 2, Duration::from_secs(15)).await;
    assert_eq!(busy.len(), 2);
    let gap = busy[1].at - busy[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 honoured (waited {gap:?}; backoff alone is ≤ 200 ms)"
    );
    // 410: disabled at once, and the others are told
    let told = rx.wait_for("/ok", 1, Duration::from_secs(15)).await;
    assert_eq!(told[0].json()["type"], "webhook.subscription.disabled.v1");
    assert_eq!(told[0].json()["data"]["subscription_id"], gone["id"]);
    let gid = gone["id"].as_str().unwrap();
    let after = body(
        srv.with_key(
            &key,
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{gid}"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(after["enabled"], false);
    assert!(after["disabled_reason"].as_str().unwrap().contains("410"));
    assert_eq!(rx.on("/gone").len(), 1, "not tried again");
    // nothing more goes to it while disabled
    add_device(srv, &key, "d-2").await;
    rx.wait_for("/fail-2", 6, Duration::from_secs(15)).await;
    assert_eq!(rx.on("/gone").len(), 1);
    // the log shows each attempt
    let log = body(
        srv.with_key(&key, Method::GET, "/v1/webhooks/deliveries?status=failed")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(log["items"].as_array().unwrap().len() >= 3, "{log}");
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status_code"] == 429)
    );
}

/// Rotation: for the grace period each delivery carries two signatures, one per secret; each
/// secret alone verifies it (the reference library accepts a header with several).
pub async fn rotation_signs_with_both_secrets(srv: &TestServer) {
    let rx = Receiver::start().await;
    let (_, key) = tenant(srv, "Rotating", "standard").await;
    let s = subscribe(
        srv,
        &key,
        json!({"url": rx.url("/ok"), "event_types": ["device.created.v1"]}),
    )
    .await;
    let old = s["secret"].as_str().unwrap().to_owned();
    let id = s["id"].as_str().unwrap();
    let r = srv
        .with_key(
            &key,
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{id}:rotate-secret"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = body(r).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    add_device(srv, &key, "r-1").await;
    let got = rx.wait_for("/ok", 1, Duration::from_secs(15)).await;
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    verify_with_reference_library(&old, &got);
    verify_with_reference_library(&new, &got);
}

/// `per_key`: a failing message holds back the later ones of its key, which then arrive in
/// commit order; `none` delivers the others meanwhile.
pub async fn per_key_order_holds_under_failures(srv: &TestServer) {
    let rx = Receiver::start().await;
    let (_, key) = tenant(srv, "Ordered", "enterprise").await;
    subscribe(
        srv,
        &key,
        json!({"url": rx.url("/fail-2"), "event_types": ["device.*"], "ordering": "per_key",
               "delivery_policy": fast_policy()}),
    )
    .await;
    for i in 0..6 {
        add_device(srv, &key, &format!("k{i}")).await;
    }
    // each message fails twice before it succeeds: 18 requests in all
    let got = rx.wait_for("/fail-2", 18, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 18);
    let order: Vec<String> = got
        .iter()
        .map(|r| r.json()["subject"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..6)
        .flat_map(|i| std::iter::repeat_n(format!("k{i}"), 3))
        .collect();
    assert_eq!(order, want, "one message at a time, in commit order");
}

/// Replay: dead messages again with the same `webhook-id`; a dry run counts and changes nothing.
pub async fn replay_redelivers_with_the_same_id(srv: &TestServer) {
    let rx = Receiver::start().await;
    let (_, key) = tenant(srv, "Replayed", "standard").await;
    let s = subscribe(
        srv,
        &key,
        json!({"url": rx.url("/fail-1"), "event_types": ["device.*"],
               "delivery_policy": {"max_attempts": 1, "timeout_ms": 2000}}),
    )
    .await;
    let sid = s["id"].as_str().unwrap();
    let from = chrono::Utc::now() - chrono::Duration::minutes(1);
    add_device(srv, &key, "p-1").await;
    add_device(srv, &key, "p-2").await;
    rx.wait_for("/fail-1", 2, Duration::from_secs(15)).await;
    // both dead after one attempt
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = body(
            srv.with_key(&key, Method::GET, "/v1/webhooks/deliveries?status=dead")
                .send()
                .await
                .unwrap(),
        )
        .await;
        if log["items"].as_array().unwrap().len() == 2 || Instant::now() > deadline {
            assert_eq!(log["items"].as_array().unwrap().len(), 2, "{log}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let to = chrono::Utc::now() + chrono::Duration::minutes(1);
    let replay = |dry: bool| {
        json!({"subscription_id": sid, "from": from, "to": to, "status": "dead",
               "event_types": ["device.created.v1"], "dry_run": dry})
    };
    let dry = body(
        srv.with_key(&key, Method::POST, "/v1/webhooks/deliveries:replay")
            .json(&replay(true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (dry["matched"].as_u64(), dry["scheduled"].as_u64()),
        (Some(2), Some(0)),
        "{dry}"
    );
    let done = body(
        srv.with_key(&key, Method::POST, "/v1/webhooks/deliveries:replay")
            .json(&replay(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(done["scheduled"], 2, "{done}");
    let got = rx.wait_for("/fail-1", 4, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 4);
    let mut first: Vec<&str> = got[..2].iter().map(Received::id).collect();
    let mut again: Vec<&str> = got[2..].iter().map(Received::id).collect();
    first.sort_unstable();
    again.sort_unstable();
    assert_eq!(first, again, "the same webhook-id on replay");
    // another tenant cannot replay (or see) this subscription
    let (_, other) = tenant(srv, "Nosy", "standard").await;
    let r = srv
        .with_key(&other, Method::POST, "/v1/webhooks/deliveries:replay")
        .json(&replay(true))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::NOT_FOUND, "webhook_subscription_not_found").await;
    assert_eq!(
        p["type"],
        "urn:tenantry:problem:webhook_subscription_not_found"
    );
}

/// A subscription whose every attempt has failed for `disable_after_hours` is disabled at its
/// next failure, with the reason, and the tenant's other subscriptions are told.
pub async fn a_subscription_failing_for_days_is_disabled(srv: &TestServer) {
    let rx = Receiver::start().await;
    let (_, key) = tenant(srv, "Withering", "enterprise").await;
    let s = subscribe(
        srv,
        &key,
        json!({"url": rx.url("/fail-1000"), "event_types": ["device.*"], "delivery_policy": fast_policy()}),
    )
    .await;
    let id: uuid::Uuid = s["id"].as_str().unwrap().parse().unwrap();
    subscribe(
        srv,
        &key,
        json!({"url": rx.url("/ok"), "event_types": ["webhook.subscription.disabled.v1"]}),
    )
    .await;
    // six days of failures, as the store would hold them
    let since = chrono::Utc::now() - chrono::Duration::days(6);
    srv.store
        .store
        .webhooks()
        .set_failing_since(id, Some(since))
        .await
        .unwrap();
    // a change of the subscription makes the dispatcher read it again (and keeps its history)
    let r = srv
        .with_key(
            &key,
            Method::PATCH,
            &format!("/v1/webhooks/subscriptions/{id}"),
        )
        .json(&json!({"description": "still failing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body(r).await["failing_since"].is_string());
    add_device(srv, &key, "w-1").await;
    let told = rx.wait_for("/ok", 1, Duration::from_secs(15)).await;
    assert_eq!(told.len(), 1, "the disabling is announced");
    assert_eq!(told[0].json()["data"]["subscription_id"], id.to_string());
    let after = body(
        srv.with_key(
            &key,
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{id}"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(after["enabled"], false);
    assert!(
        after["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("every attempt failed since"),
        "{after}"
    );
    // re-enabled, its failure history starts over
    let r = srv
        .with_key(
            &key,
            Method::PATCH,
            &format!("/v1/webhooks/subscriptions/{id}"),
        )
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    let v = body(r).await;
    assert_eq!(v["enabled"], true);
    assert!(
        v["failing_since"].is_null() && v["disabled_reason"].is_null(),
        "{v}"
    );
}
