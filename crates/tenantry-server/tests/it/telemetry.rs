//! Device telemetry over HTTP: ingest (JSON and NDJSON, each event on its own, duplicates,
//! device keys, time rules) and reading a device's events back.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::testing::TestServer;

use crate::access::tenant_key;
use crate::support::*;

fn at(minutes_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn event(id: &str, device: &str, minutes_ago: i64, value: f64) -> Value {
    json!({ "event_id": id, "device_id": device, "type": "temperature",
            "value": value, "recorded_at": at(minutes_ago) })
}

async fn send(srv: &TestServer, key: &str, body: &Value) -> (StatusCode, Value) {
    let r = srv
        .with_key(key, Method::POST, "/v1/telemetry")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, body_of(r).await)
}

async fn body_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap_or(Value::Null)
}

pub async fn events_are_ingested_once_and_read_back_in_order(srv: &TestServer) {
    let t = tenant_named(srv, "Metered").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    // sent out of order; one event is bad, one is two minutes of skew too far ahead
    let batch = json!({ "events": [
        event("e3", "m1", 1, 23.0),
        event("e1", "m1", 3, 21.0),
        { "event_id": "bad", "device_id": "m1", "type": "temperature", "recorded_at": at(1) },
        event("e2", "m1", 2, 22.0),
        event("future", "m1", -7, 0.0),
    ]});
    let (status, out) = send(srv, &admin, &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["accepted"], 3);
    assert_eq!(out["duplicates"], 0);
    let rejected = out["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{out}");
    assert_eq!(rejected[0]["index"], 2);
    assert_eq!(rejected[0]["type"], "invalid_event");
    assert_eq!(rejected[1]["index"], 4);
    assert_eq!(rejected[1]["type"], "recorded_in_the_future");
    // the same batch again: nothing new
    let (status, again) = send(srv, &admin, &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 3);
    // NDJSON: a bad line is rejected alone, a known event is a duplicate
    let ndjson = format!(
        "{}\n{{oops\n{}\n",
        event("e4", "m1", 0, 24.0),
        event("e1", "m1", 3, 21.0)
    );
    let r = srv
        .with_key(&admin, Method::POST, "/v1/telemetry")
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let out = body_of(r).await;
    assert_eq!(
        (out["accepted"].clone(), out["duplicates"].clone()),
        (json!(1), json!(1)),
        "{out}"
    );
    assert_eq!(out["rejected"][0]["index"], 1);
    // read back in recorded_at order, both ways, and by pages
    let read = |q: &str| {
        srv.with_key(&admin, Method::GET, &format!("/v1/devices/m1/telemetry{q}"))
            .send()
    };
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = body_of(read("").await.unwrap()).await;
    assert_eq!(ids(&all), ["e1", "e2", "e3", "e4"]);
    assert!(all["items"][0]["received_at"].is_string());
    let desc = body_of(read("?order=desc").await.unwrap()).await;
    assert_eq!(ids(&desc), ["e4", "e3", "e2", "e1"]);
    let first = body_of(read("?limit=3").await.unwrap()).await;
    assert_eq!(ids(&first), ["e1", "e2", "e3"]);
    let cursor = first["page_info"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = body_of(read(&format!("?limit=3&cursor={cursor}")).await.unwrap()).await;
    assert_eq!(ids(&rest), ["e4"]);
    // a cursor belongs to its own filter
    let r = read(&format!("?limit=3&order=desc&cursor={cursor}"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = read("?from=yesterday").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let empty = body_of(read("?type=humidity").await.unwrap()).await;
    assert_eq!(ids(&empty), Vec::<String>::new());
}

pub async fn device_keys_write_only_their_own_device(srv: &TestServer) {
    let t = tenant_named(srv, "Devices").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    let r = srv
        .with_key(&admin, Method::POST, "/v1/devices")
        .json(&json!({ "device_id": "meter-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let device_key = body_of(r).await["key"].as_str().unwrap().to_owned();
    let batch =
        json!({ "events": [event("d1", "meter-1", 1, 1.0), event("d2", "meter-2", 1, 2.0)] });
    let (status, out) = send(srv, &device_key, &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["accepted"], 1);
    assert_eq!(out["rejected"][0]["type"], "wrong_device");
    assert_eq!(out["rejected"][0]["index"], 1);
    // only another device's events: everything rejected is a 422 naming each
    let (status, out) = send(
        srv,
        &device_key,
        &json!({ "events": [event("d3", "meter-2", 1, 3.0)] }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["errors"][0]["field"], "events[0]");
    // a device key writes, it does not read
    let r = srv
        .with_key(&device_key, Method::GET, "/v1/devices/meter-1/telemetry")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

pub async fn bad_batches_are_refused_whole(srv: &TestServer) {
    let t = tenant_named(srv, "Strict").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    for (body, status) in [
        (json!({ "events": [] }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "evnts": [] }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!([event("x", "m", 1, 1.0)]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "events": (0..1001).map(|i| event(&format!("n{i}"), "m", 1, 1.0)).collect::<Vec<_>>() }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "events": [event("old", "m", 60 * 24 * 400, 1.0)] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (got, out) = send(srv, &admin, &body).await;
        assert_eq!(got, status, "{out}");
    }
    // the events' ids make retries safe: an Idempotency-Key is refused, not ignored
    let r = srv
        .with_key(&admin, Method::POST, "/v1/telemetry")
        .header("idempotency-key", "k1")
        .json(&json!({ "events": [event("i1", "m", 1, 1.0)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = srv
        .with_key(&admin, Method::POST, "/v1/telemetry")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // NUL in a line of JSON lines follows the platform's text policy, for that line
    let r = srv
        .with_key(&admin, Method::POST, "/v1/telemetry")
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{}\n{}",
            event("ok", "m", 1, 1.0),
            json!({"event_id": "nul\u{0}", "device_id": "m"})
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let out = body_of(r).await;
    assert!(
        out["rejected"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("U+0000"),
        "{out}"
    );
}

pub async fn stats_summarise_buckets(srv: &TestServer) {
    let t = tenant_named(srv, "Summed").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    let (status, _) = send(
        srv,
        &admin,
        &json!({ "events": [
            event("s1", "m1", 10, 1.0),
            event("s2", "m1", 10, 3.0),
            event("s3", "m2", 10, 100.0),
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let get = |q: String| {
        srv.with_key(&admin, Method::GET, &format!("/v1/telemetry/stats{q}"))
            .send()
    };
    // the last day, hourly, one device: the two events are one or two buckets (an hour may turn
    // between them), together 2 events with min 1 and max 3
    let b = body_of(get("?device_id=m1".into()).await.unwrap()).await;
    let buckets = b.as_array().unwrap();
    let count: i64 = buckets.iter().map(|x| x["count"].as_i64().unwrap()).sum();
    assert_eq!(count, 2, "{b}");
    let max = buckets
        .iter()
        .map(|x| x["max"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(max, 3.0);
    // one daily bucket for everything recorded around then
    let from = at(60 * 24);
    let b = body_of(
        get(format!("?bucket=1d&from={}", urlencode(&from)))
            .await
            .unwrap(),
    )
    .await;
    let count: i64 = b
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["count"].as_i64().unwrap())
        .sum();
    assert_eq!(count, 3, "{b}");
    for bad in ["?bucket=2m", "?from=yesterday"] {
        assert_eq!(
            get(bad.into()).await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // a minute's buckets over ten years are too many
    let r = get(format!(
        "?bucket=1m&from={}",
        urlencode(&at(60 * 24 * 3650))
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

pub async fn ingestion_past_its_budget_is_503_and_stores_nothing(srv: &TestServer) {
    let t = tenant_named(srv, "Busy").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    // other requests hold the whole budget
    let budget = srv.app.telemetry().budget().clone();
    let held = budget.available_permits() as u32;
    let busy = budget.try_acquire_many_owned(held).unwrap();
    let batch = json!({ "events": [event("b1", "m1", 1, 1.0)] });
    let r = srv
        .with_key(&admin, Method::POST, "/v1/telemetry")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    drop(busy);
    // nothing was stored: the retry stores it
    let (status, out) = send(srv, &admin, &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(out["accepted"], 1, "{out}");
}

/// By default a device's first event registers it (listed, audited as `device.register`, with
/// a `device.created.v1` event); an instance configured to reject refuses unknown devices'
/// events by index, and takes them once the device is registered.
pub async fn unknown_devices_are_registered_or_refused(srv: &TestServer) {
    let t = tenant_named(srv, "Newcomers").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = tenant_key(srv, &tid, &["tenant_admin"]).await;
    let (status, out) = send(
        srv,
        &admin,
        &json!({ "events": [event("n1", "fresh-1", 1, 1.0), event("n2", "fresh-1", 1, 2.0)] }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["accepted"], 2);
    let r = srv
        .with_key(&admin, Method::GET, "/v1/devices/fresh-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "registered by its first event");
    let audit = body_of(
        srv.with_key(&admin, Method::GET, "/v1/audit?action=device.register")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["resource_id"], "fresh-1");

    let strict = srv
        .second_instance_with(|c| {
            c.telemetry.unknown_devices =
                tenantry_server::telemetry::config::UnknownDevicePolicy::Reject;
        })
        .await;
    let (status, out) = send(
        &strict,
        &admin,
        &json!({ "events": [
            event("s1", "fresh-1", 1, 1.0),
            event("s2", "stranger", 1, 2.0),
        ] }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["accepted"], 1);
    assert_eq!(out["rejected"][0]["index"], 1);
    assert_eq!(out["rejected"][0]["type"], "unknown_device");
    let (status, out) = send(
        &strict,
        &admin,
        &json!({ "events": [event("s2", "stranger", 1, 2.0)] }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let r = srv
        .with_key(&admin, Method::GET, "/v1/devices/stranger")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not registered");
    strict.stop().await;
}

/// Reads SSE events from a live stream until `want` `telemetry` events arrived (or 10 s).
async fn read_stream(resp: &mut reqwest::Response, want: usize) -> Vec<Value> {
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while events.len() < want {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: telemetry") {
                let data = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<String>();
                events.push(serde_json::from_str(&data).unwrap());
            }
        }
    }
    events
}

/// The live stream carries newly stored events of the caller's tenant only — never another
/// tenant's, never a duplicate — filtered by device and type.
pub async fn the_live_stream_carries_only_the_callers_events(srv: &TestServer) {
    let a = tenant_named(srv, "Watcher").await;
    let b = tenant_named(srv, "Neighbour").await;
    let (_, a_admin) = tenant_key(srv, a["id"].as_str().unwrap(), &["tenant_admin"]).await;
    let (_, b_admin) = tenant_key(srv, b["id"].as_str().unwrap(), &["tenant_admin"]).await;
    let mut all = srv
        .with_key(&a_admin, Method::GET, "/v1/telemetry/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::OK);
    assert!(
        all.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut one = srv
        .with_key(
            &a_admin,
            Method::GET,
            "/v1/telemetry/stream?device_id=m2&type=temperature",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    // B's events first, then A's (one a duplicate of an earlier one)
    let (status, _) = send(
        srv,
        &b_admin,
        &json!({ "events": [event("b-secret", "m1", 1, 66.0)] }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = send(
        srv,
        &a_admin,
        &json!({ "events": [event("a1", "m1", 1, 1.0)] }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = send(
        srv,
        &a_admin,
        &json!({ "events": [event("a1", "m1", 1, 1.0), event("a2", "m2", 1, 2.0)] }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let seen = read_stream(&mut all, 2).await;
    let ids: Vec<_> = seen
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["a1", "a2"],
        "A's new events, in order, nothing of B's"
    );
    assert!(seen[0]["received_at"].is_string());
    let seen = read_stream(&mut one, 1).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["event_id"], "a2");
    // a bad filter is a clear error; a device key cannot read the stream
    let r = srv
        .with_key(&a_admin, Method::GET, "/v1/telemetry/stream?devices=m1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Concurrent requests of several tenants share group commits: every event is stored once,
/// under its own tenant, and each answer counts exactly its own events.
pub async fn concurrent_requests_share_commits_and_count_exactly(srv: &TestServer) {
    let mut keys = Vec::new();
    for name in ["Group A", "Group B", "Group C"] {
        let t = tenant_named(srv, name).await;
        keys.push(
            tenant_key(srv, t["id"].as_str().unwrap(), &["tenant_admin"])
                .await
                .1,
        );
    }
    // 3 tenants × 8 requests × 50 events; each request overlaps its predecessor by 10
    let mut requests = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        for r in 0..8 {
            let events: Vec<Value> = (r * 40..r * 40 + 50)
                .map(|i| event(&format!("g{i}"), &format!("dev-{}", i % 4), 1, i as f64))
                .collect();
            let (srv, key) = (srv, key.clone());
            requests.push(async move {
                let (status, out) = send(srv, &key, &json!({ "events": events })).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{out}");
                (k, out)
            });
        }
    }
    let answers = futures_util::future::join_all(requests).await;
    for (k, key) in keys.iter().enumerate() {
        let mine: Vec<_> = answers.iter().filter(|(t, _)| *t == k).collect();
        let accepted: u64 = mine
            .iter()
            .map(|(_, o)| o["accepted"].as_u64().unwrap())
            .sum();
        let duplicates: u64 = mine
            .iter()
            .map(|(_, o)| o["duplicates"].as_u64().unwrap())
            .sum();
        assert_eq!(accepted, 7 * 40 + 50, "every distinct event stored once");
        assert_eq!(accepted + duplicates, 8 * 50, "every event counted once");
        let stats = body_of(
            srv.with_key(key, Method::GET, "/v1/telemetry/stats?bucket=1d")
                .send()
                .await
                .unwrap(),
        )
        .await;
        let count: i64 = stats
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_i64().unwrap())
            .sum();
        assert_eq!(count, 7 * 40 + 50, "{stats}");
    }
}

/// Back-dated events straight into the store (the API refuses events older than retention).
async fn back_dated(srv: &TestServer, tenant: &Value, days_ago: &[i64]) -> usize {
    let id: tenantry_domain::TenantId = tenant["id"].as_str().unwrap().parse().unwrap();
    let record = srv
        .app
        .store()
        .tenants()
        .get(&tenantry_domain::TenantRef::Id(id))
        .await
        .unwrap()
        .unwrap();
    let scope = tenantry_server::access::scope::system_scope(&record, "test back-dated events");
    let now = chrono::Utc::now();
    let events: Vec<_> = days_ago
        .iter()
        .enumerate()
        .map(|(i, d)| tenantry_domain::telemetry::TelemetryEvent {
            event_id: format!("old-{i}-{d}"),
            device_id: "m1".into(),
            event_type: "temperature".into(),
            value: Some(*d as f64),
            values: Default::default(),
            payload: None,
            recorded_at: tenantry_server::platform::now() - chrono::Duration::days(*d),
        })
        .collect();
    let store = srv.app.store().telemetry();
    store
        .prepare(now - chrono::Duration::days(400), now)
        .await
        .unwrap();
    store.insert(&scope, &events, now).await.unwrap().stored
}

async fn count_of(srv: &TestServer, key: &str) -> usize {
    let page = body_of(
        srv.with_key(key, Method::GET, "/v1/devices/m1/telemetry?limit=200")
            .send()
            .await
            .unwrap(),
    )
    .await;
    page["items"].as_array().unwrap().len()
}

/// Retention with back-dated events: an enterprise tenant's expired events are archived (data
/// and manifest in the blob store) then removed, a free tenant's only removed, each with an
/// audit record; a tenant on legal hold keeps everything; the archive loads back.
pub async fn retention_archives_removes_restores_and_spares_held_tenants(srv: &TestServer) {
    let ent = create_tenant(srv, json!({"name": "Archived", "edition": "enterprise"})).await;
    let free = create_tenant(srv, json!({"name": "Forgetful", "edition": "free"})).await;
    let held = create_tenant(srv, json!({"name": "Held", "edition": "free"})).await;
    let key_of = async |t: &Value| {
        tenant_key(srv, t["id"].as_str().unwrap(), &["tenant_admin"])
            .await
            .1
    };
    let (ent_key, free_key, held_key) =
        (key_of(&ent).await, key_of(&free).await, key_of(&held).await);
    // the hold, through the operator API
    let url = format!(
        "/v1/tenants/{}/telemetry-settings",
        held["id"].as_str().unwrap()
    );
    let r = srv
        .op(Method::PUT, &url)
        .json(&json!({ "legal_hold": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let shown = body_of(srv.op(Method::GET, &url).send().await.unwrap()).await;
    assert_eq!(shown, json!({ "legal_hold": true, "archive": null }));
    let r = srv
        .op(Method::PUT, &url)
        .json(&json!({ "legal_hold": "yes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // enterprise keeps 90 days, free 7
    assert_eq!(back_dated(srv, &ent, &[130, 100, 95, 1]).await, 4);
    assert_eq!(back_dated(srv, &free, &[10, 8, 1]).await, 3);
    assert_eq!(back_dated(srv, &held, &[300, 10, 1]).await, 3);
    let report = srv
        .app
        .run_telemetry_retention(tenantry_server::platform::now())
        .await
        .unwrap();
    assert_eq!(report.removed, 3 + 2);
    assert_eq!(report.held.len(), 1);
    assert_eq!(count_of(srv, &ent_key).await, 1);
    assert_eq!(count_of(srv, &free_key).await, 1);
    assert_eq!(
        count_of(srv, &held_key).await,
        3,
        "a held tenant is untouched"
    );

    // archived first: enterprise only, a manifest per month, checked against its file
    let ent_id: tenantry_domain::TenantId = ent["id"].as_str().unwrap().parse().unwrap();
    let free_id: tenantry_domain::TenantId = free["id"].as_str().unwrap().parse().unwrap();
    let manifests = srv.app.telemetry_archives(Some(ent_id)).await.unwrap();
    assert!(
        !manifests.is_empty() && manifests.len() <= 3,
        "{manifests:?}"
    );
    assert_eq!(manifests, report.archives);
    assert!(
        srv.app
            .telemetry_archives(Some(free_id))
            .await
            .unwrap()
            .is_empty()
    );
    let blobs = tenantry_blob::ObjectBlobs::local(&srv.archive).unwrap();
    let mut archived = 0;
    for m in &manifests {
        use tenantry_blob::BlobStore;
        let manifest: Value =
            serde_json::from_slice(&blobs.get(m).await.unwrap().unwrap()).unwrap();
        archived += manifest["count"].as_u64().unwrap();
        let data = blobs
            .get(manifest["data"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&data)),
            manifest["sha256"].as_str().unwrap()
        );
    }
    assert_eq!(archived, 3);

    // one audit record per tenant that lost events
    let audit = body_of(
        srv.op(Method::GET, "/v1/audit?action=telemetry.retention")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert!(items.iter().any(|a| a["details"]["removed"] == 3));

    // the archive loads back, once
    let mut restored = 0;
    for m in &manifests {
        let r = srv.app.restore_telemetry_archive(m).await.unwrap();
        restored += r.stored;
        assert_eq!(r.duplicates, 0);
    }
    assert_eq!(restored, 3);
    assert_eq!(count_of(srv, &ent_key).await, 4);
    let again = srv
        .app
        .restore_telemetry_archive(&manifests[0])
        .await
        .unwrap();
    assert_eq!(again.stored, 0, "a second restore finds only duplicates");
    // a wrong key is a clear error
    let missing = srv
        .app
        .restore_telemetry_archive("telemetry/none.manifest.json")
        .await;
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("no archive manifest")
    );
}

/// Retention and partition upkeep run on the job engine: start-up creates their platform
/// schedules, and a `telemetry.retention` job runs to completion.
pub async fn retention_runs_as_a_scheduled_job(srv: &TestServer) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = srv
            .op(Method::GET, "/v1/schedules/telemetry-retention")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let s = body_of(r).await;
            assert_eq!(s["kind"], "telemetry.retention");
            assert_eq!(s["cron"], "17 3 * * *");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retention schedule"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = srv
        .op(Method::GET, "/v1/schedules/telemetry-partitions")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let job = body_of(
        srv.op(Method::POST, "/v1/jobs")
            .json(&json!({ "kind": "telemetry.retention" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    loop {
        let j = body_of(
            srv.op(Method::GET, &format!("/v1/jobs/{id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if j["state"] == "completed" {
            break;
        }
        assert!(
            !["dead", "cancelled"].contains(&j["state"].as_str().unwrap_or("")),
            "{j}"
        );
        assert!(
            tokio::time::Instant::now() < deadline + std::time::Duration::from_secs(20),
            "{j}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
