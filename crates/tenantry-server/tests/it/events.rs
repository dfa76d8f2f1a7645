//! The event fabric over HTTP: the log (`GET /v1/events`), the catalog (`GET /v1/event-types`,
//! its schemas checked by an independent JSON Schema validator), and realtime streams
//! (`GET /v1/stream`) — live delivery, tenant fencing, exact resume, limits — on one instance,
//! on two instances over NATS JetStream, and through a NATS outage.

use std::io::Write as _;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::testing::TestServer;

use crate::support::{body, key_with_scopes, problem, tenant_named};

/// A tenant (id) and a key of it with `events:read` and `devices:manage`.
pub async fn tenant_with_key(srv: &TestServer, name: &str) -> (String, String) {
    let t = tenant_named(srv, name).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let key = key_with_scopes(srv, &id, &["events:read", "devices:manage"]).await;
    (id, key)
}

pub async fn add_device(srv: &TestServer, key: &str, device: &str) {
    let r = srv
        .with_key(key, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": device }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
}

/// The tenant's log (as its key reads it) once it holds at least `want` events of `query`.
async fn log_of(srv: &TestServer, key: &str, query: &str, want: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = srv
            .with_key(key, Method::GET, &format!("/v1/events?limit=200{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let items = body(r).await["items"].as_array().unwrap().clone();
        if items.len() >= want || tokio::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One SSE message.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Reads a stream until `want` messages of type other than heartbeat arrived, or `wait` passed.
pub async fn read_sse(resp: &mut reqwest::Response, want: usize, wait: Duration) -> Vec<Sse> {
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < want {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .filter_map(|l| l.strip_prefix(name))
                    .map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
                    .collect::<Vec<_>>()
            };
            let data = field("data:").join("\n");
            if data.is_empty() {
                continue; // a heartbeat comment
            }
            out.push(Sse {
                id: field("id:").pop(),
                event: field("event:").pop().unwrap_or_else(|| "message".into()),
                data: serde_json::from_str(&data).unwrap(),
            });
        }
    }
    out
}

pub async fn open_stream(
    srv: &TestServer,
    key: &str,
    query: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = srv.with_key(key, Method::GET, &format!("/v1/stream{query}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.headers());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    r
}

/// Checks `events` (CloudEvents) against the catalog's schemas with Python's `jsonschema` (an
/// independent implementation of JSON Schema 2020-12): every `data` validates.
fn validate_with_jsonschema(catalog: &Value, events: &[Value]) {
    let available = std::process::Command::new("python3")
        .args(["-c", "from jsonschema import Draft202012Validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but python3 cannot import jsonschema (pip install jsonschema)"
        );
        eprintln!("skipped: the jsonschema check (pip install jsonschema)");
        return;
    }
    const CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(sys.stdin)
schemas = {t["type"]: t["schema"] for t in doc["catalog"]["items"]}
for s in schemas.values():
    Draft202012Validator.check_schema(s)
bad = []
for e in doc["events"]:
    v = Draft202012Validator(schemas[e["type"]], format_checker=Draft202012Validator.FORMAT_CHECKER)
    bad += [f'{e["type"]}: {err.message}' for err in v.iter_errors(e["data"])]
print(json.dumps({"checked": len(doc["events"]), "bad": bad}))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", CHECK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let input = json!({ "catalog": catalog, "events": events });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jsonschema check failed to run (pip install jsonschema)"
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["bad"], json!([]), "{result}");
    assert_eq!(result["checked"], events.len());
}

/// The log serves a tenant's own events as CloudEvents in commit order, filtered and
/// paginated; operators name the tenant (or `platform`); the catalog's schemas hold.
pub async fn the_log_serves_each_tenant_its_own_cloud_events(srv: &TestServer) {
    let (a, ka) = tenant_with_key(srv, "Log A").await;
    let (_b, kb) = tenant_with_key(srv, "Log B").await;
    for d in ["d1", "d2", "d3"] {
        add_device(srv, &ka, d).await;
    }
    add_device(srv, &kb, "other").await;
    let all = log_of(srv, &ka, "", 5).await;
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "tenant.created.v1",
            "api_key.created.v1",
            "device.created.v1",
            "device.created.v1",
            "device.created.v1"
        ]
    );
    let seqs: Vec<&str> = all
        .iter()
        .map(|e| e["sequence"].as_str().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "commit order: {seqs:?}"
    );
    for e in &all {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["tenantid"], a.as_str());
        assert_eq!(e["source"], "/tenantry/platform");
    }
    let devices = log_of(srv, &ka, "&type=device.*", 3).await;
    let subjects: Vec<&str> = devices
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["d1", "d2", "d3"]);
    let one = log_of(srv, &ka, "&subject=d2", 1).await;
    assert_eq!(one.len(), 1);
    // pages
    let r = srv
        .with_key(&ka, Method::GET, "/v1/events?limit=3")
        .send()
        .await
        .unwrap();
    let first = body(r).await;
    let cursor = first["page_info"]["next_cursor"].as_str().unwrap();
    let r = srv
        .with_key(
            &ka,
            Method::GET,
            &format!("/v1/events?limit=3&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap();
    let second = body(r).await;
    let ids: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids, all.iter().map(|e| &e["id"]).collect::<Vec<_>>());
    // B's cursor is not A's; B's log has none of A's events
    let r = srv
        .with_key(&kb, Method::GET, &format!("/v1/events?cursor={cursor}"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let b_log = log_of(srv, &kb, "", 2).await;
    assert!(b_log.iter().all(|e| e["tenantid"] != a.as_str()));
    // operators name whose log
    let r = srv.op(Method::GET, "/v1/events").send().await.unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    let r = srv
        .op(Method::GET, &format!("/v1/events?tenant={a}&limit=200"))
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await["items"].as_array().unwrap().len(), all.len());
    let r = srv
        .op(Method::GET, "/v1/events?tenant=platform&limit=200")
        .send()
        .await
        .unwrap();
    let platform = body(r).await["items"].as_array().unwrap().clone();
    assert!(platform.iter().all(|e| e.get("tenantid").is_none()));
    let r = srv
        .with_key(&ka, Method::GET, "/v1/events?type=device%")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    // the catalog, and every event read against it by an independent validator
    let r = srv
        .with_key(&ka, Method::GET, "/v1/event-types")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let catalog = body(r).await;
    assert!(catalog["items"].as_array().unwrap().len() >= 20);
    let mut events = all.clone();
    events.extend(b_log);
    events.extend(platform);
    validate_with_jsonschema(&catalog, &events);
}

/// A stream gets its tenant's events live, never another tenant's; a reconnect with
/// `Last-Event-ID` gets exactly what it missed; bad input gets clear errors; the edition
/// bounds open streams.
pub async fn streams_deliver_live_and_resume_exactly(srv: &TestServer) {
    let (_a, ka) = tenant_with_key(srv, "Stream A").await;
    let (_b, kb) = tenant_with_key(srv, "Stream B").await;
    let mut a_stream = open_stream(srv, &ka, "?types=device.*", None).await;
    // B adds no device: whatever device event its stream got would be A's
    let mut b_stream = open_stream(srv, &kb, "?types=device.*", None).await;
    add_device(srv, &ka, "s1").await;
    add_device(srv, &ka, "s2").await;
    let got = read_sse(&mut a_stream, 2, Duration::from_secs(10)).await;
    let subjects: Vec<&str> = got
        .iter()
        .map(|m| m.data["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["s1", "s2"]);
    for m in &got {
        assert_eq!(m.event, "device.created.v1");
        assert_eq!(m.id.as_deref(), m.data["id"].as_str());
    }
    let last = got[1].id.clone().unwrap();
    drop(a_stream);
    // written while the client is away
    for d in ["s3", "s4", "s5"] {
        add_device(srv, &ka, d).await;
    }
    let mut again = open_stream(srv, &ka, "?types=device.*", Some(&last)).await;
    let missed = read_sse(&mut again, 10, Duration::from_millis(1500)).await;
    let subjects: Vec<&str> = missed
        .iter()
        .map(|m| m.data["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["s3", "s4", "s5"], "exactly the missed events");
    add_device(srv, &ka, "s6").await;
    let live = read_sse(&mut again, 1, Duration::from_secs(10)).await;
    assert_eq!(live[0].data["subject"], "s6");
    assert!(
        read_sse(&mut b_stream, 1, Duration::from_millis(300))
            .await
            .is_empty(),
        "another tenant's stream saw A's events"
    );
    // errors
    let r = srv
        .with_key(&kb, Method::GET, "/v1/stream")
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::GONE, "resume_unavailable").await;
    let r = srv
        .with_key(&ka, Method::GET, "/v1/stream?types=Device")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    // free edition: 5 streams at once
    drop(b_stream);
    let mut open = vec![again];
    for _ in 0..4 {
        open.push(open_stream(srv, &ka, "", None).await);
    }
    let r = srv
        .with_key(&ka, Method::GET, "/v1/stream")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "quota_exceeded").await;
    drop(open.pop());
    // the slot is given back once the server sees the connection close
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = srv
            .with_key(&ka, Method::GET, "/v1/stream")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nats_url() -> Option<String> {
    match std::env::var("TENANTRY_TEST_NATS_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but TENANTRY_TEST_NATS_URL is not"
            );
            None
        }
    }
}

fn unique(name: &str) -> String {
    format!("t{}_{name}", uuid::Uuid::new_v4().simple())
}

/// Two instances over NATS JetStream: a stream on B receives, in commit order, the events
/// written through A; a reconnect to B with `Last-Event-ID` gets exactly the missed ones;
/// another tenant's stream gets none.
pub async fn two_instances_share_streams_over_nats(store: tenantry_store::testing::TestStore) {
    let Some(url) = nats_url() else {
        return tenantry_store::testing::skip_notice("two_instances_share_streams_over_nats");
    };
    let name = unique("two");
    let tweak = |c: &mut tenantry_server::config::Config| {
        c.events.nats_url = url.clone();
        c.events.nats_stream = name.clone();
        c.events.subject_prefix = name.clone();
    };
    let a = TestServer::start(store, tweak).await;
    let b = a.second_instance_with(tweak).await;
    let (_t, key) = tenant_with_key(&a, "Across").await;
    let (_o, other) = tenant_with_key(&a, "Bystander").await;
    let mut on_b = open_stream(&b, &key, "?types=device.*", None).await;
    // The bystander's own setup events (tenant, key) may still be on their way; device events
    // are what the other tenant writes, so those are what must not leak.
    let mut other_on_b = open_stream(&b, &other, "?types=device.*", None).await;
    for i in 0..20 {
        add_device(&a, &key, &format!("x{i:02}")).await;
    }
    let got = read_sse(&mut on_b, 20, Duration::from_secs(15)).await;
    let subjects: Vec<String> = got
        .iter()
        .map(|m| m.data["subject"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..20).map(|i| format!("x{i:02}")).collect();
    assert_eq!(subjects, want, "in commit order, each once");
    let last = got[9].id.clone().unwrap();
    drop(on_b);
    let mut resumed = open_stream(&b, &key, "?types=device.*", Some(&last)).await;
    let missed = read_sse(&mut resumed, 11, Duration::from_secs(3)).await;
    let subjects: Vec<String> = missed
        .iter()
        .map(|m| m.data["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects,
        want[10..],
        "exactly the events after Last-Event-ID"
    );
    assert!(
        read_sse(&mut other_on_b, 1, Duration::from_millis(300))
            .await
            .is_empty(),
        "another tenant's stream received events"
    );
    let bus = tenantry_bus::NatsBus::connect(&url, &name, &name, Duration::from_secs(60))
        .await
        .unwrap();
    drop((resumed, other_on_b));
    b.stop().await;
    a.stop().await;
    bus.delete_stream().await.unwrap();
}

/// A private NATS server (its own port and storage directory), stopped and started at will.
struct PrivateNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    fn binary() -> Option<String> {
        [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
    }

    fn start(&mut self) {
        let bin = Self::binary().expect("nats-server");
        let child = std::process::Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NATS stopped under writes, then started again: every write succeeds, `/readyz` says the bus
/// is down meanwhile, and the open stream receives every event, in order, once the bus is back —
/// with no restart.
pub async fn a_bus_outage_loses_nothing(store: tenantry_store::testing::TestStore) {
    if nats_url().is_none() {
        return tenantry_store::testing::skip_notice("a_bus_outage_loses_nothing");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nats = PrivateNats {
        port,
        dir: tempfile::tempdir().unwrap(),
        child: None,
    };
    nats.start();
    let url = format!("nats://127.0.0.1:{port}");
    let srv = TestServer::start(store, |c| c.events.nats_url = url.clone()).await;
    let (_t, key) = tenant_with_key(&srv, "Outage").await;
    let mut stream = open_stream(&srv, &key, "?types=device.*", None).await;
    add_device(&srv, &key, "before").await;
    let first = read_sse(&mut stream, 1, Duration::from_secs(10)).await;
    assert_eq!(first[0].data["subject"], "before");

    nats.stop();
    for i in 0..15 {
        add_device(&srv, &key, &format!("during-{i:02}")).await; // writes never fail
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = srv.op(Method::GET, "/readyz").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the instance stays ready");
        let ready = body(r).await;
        if ready["checks"]["events"]["status"] == "degraded" {
            assert_eq!(ready["status"], "degraded");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never showed the outage: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nats.start();
    let rest = read_sse(&mut stream, 15, Duration::from_secs(30)).await;
    let subjects: Vec<String> = rest
        .iter()
        .map(|m| m.data["subject"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..15).map(|i| format!("during-{i:02}")).collect();
    assert_eq!(
        subjects, want,
        "caught up, in order, nothing lost or repeated"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready = body(srv.op(Method::GET, "/readyz").send().await.unwrap()).await;
        if ready["checks"]["events"]["status"] == "ok" && ready["checks"]["events"]["backlog"] == 0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never recovered: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stream);
    srv.stop().await;
}
