//! JWT bearer tokens: HS256 with a secret, RS256 / ES256 / EdDSA from a JWKS served by a local
//! identity-provider stand-in (a real HTTP server publishing real keys).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry_server::config::Secret;
use tenantry_server::testing::TestServer;

use crate::support::*;

const SECRET: &str = "a-development-secret-of-at-least-32-bytes";
const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "tenantry-api";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn claims(tenant: &str, extra: Value) -> Value {
    let mut c = json!({
        "sub": "user-42", "tenant_id": tenant, "iss": ISSUER, "aud": AUDIENCE,
        "exp": now() + 300, "iat": now(), "roles": ["tenant_admin"],
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn hs256_server() -> TestServer {
    TestServer::start(tenantry_store::testing::sqlite().await, |c| {
        c.auth.jwt_hs256_secret = Some(Secret::new(SECRET));
        c.auth.jwt_issuer = ISSUER.into();
        c.auth.jwt_audience = AUDIENCE.into();
    })
    .await
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

async fn get(srv: &TestServer, token: &str, path: &str) -> reqwest::Response {
    srv.with_key(token, Method::GET, path).send().await.unwrap()
}

/// Asserts a 401 whose challenge says `invalid_token` and whose detail contains `why`.
async fn rejected(resp: reqwest::Response, why: &str) {
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"tenantry\", error=\"invalid_token\""),
        "{challenge}"
    );
    let b = problem(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(
        b["detail"].as_str().unwrap().contains(why),
        "expected '{why}' in {b}"
    );
}

pub async fn hs256_tokens_authenticate_and_resolve_their_tenant() {
    let srv = hs256_server().await;
    let a = tenant_named(&srv, "Token A").await;
    let b = tenant_named(&srv, "Token B").await;
    let (ta, tb) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    let token = hs(&claims(ta, json!({})));
    let resp = get(&srv, &token, "/v1/whoami").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let me = body(resp).await;
    assert_eq!(
        (me["credential"].as_str(), me["subject"].as_str()),
        (Some("jwt"), Some("user-42"))
    );
    assert_eq!(me["tenant"]["id"], ta);
    assert!(
        me["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("keys:manage"))
    );

    // the token's tenant is the only one it reaches
    let resp = srv
        .with_key(&token, Method::GET, "/v1/whoami")
        .header("x-tenant-id", tb)
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::FORBIDDEN, "tenant_mismatch").await;
    // and it is no operator credential, whatever its roles say
    let op_claims = claims(
        ta,
        json!({"roles": ["operator"], "scope": "tenants:manage"}),
    );
    let resp = srv
        .with_key(&hs(&op_claims), Method::POST, "/v1/tenants")
        .json(&json!({"name": "Nope"}))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::FORBIDDEN, "operator_required").await;

    // scopes come from `scope` (space-separated) or `scp`; a missing one is named
    let narrow = hs(&claims(
        ta,
        json!({"roles": null, "scope": "tenants:read openid"}),
    ));
    assert_eq!(
        get(&srv, &narrow, "/v1/whoami").await.status(),
        StatusCode::OK
    );
    let b = problem(
        get(&srv, &narrow, "/v1/devices").await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert!(
        b["detail"].as_str().unwrap().contains("devices:read"),
        "{b}"
    );
    let scp = hs(&claims(ta, json!({"roles": null, "scp": ["devices:read"]})));
    assert_eq!(
        get(&srv, &scp, "/v1/devices").await.status(),
        StatusCode::OK
    );

    // a token's changes are audited with the user as the actor
    let resp = srv
        .with_key(&token, Method::POST, "/v1/devices")
        .json(&json!({"device_id": "sensor-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let audit = body(
        srv.op(
            Method::GET,
            &format!("/v1/audit?tenant={ta}&action=device.create"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(audit["items"][0]["actor"]["kind"], "user", "{audit}");
    assert_eq!(audit["items"][0]["actor"]["id"], "user-42", "{audit}");
    srv.stop().await;
}

pub async fn invalid_tokens_are_401_with_a_reason() {
    let srv = hs256_server().await;
    let a = tenant_named(&srv, "Strict").await;
    let ta = a["id"].as_str().unwrap();
    let cases = [
        (json!({"exp": now() - 121 - 5}), "expired"),
        (json!({"nbf": now() + 121 + 5}), "not valid yet"),
        (json!({"iss": "https://evil.example/"}), "issuer"),
        (json!({"aud": "another-api"}), "audience"),
        (json!({"exp": null}), "required claim"),
        (json!({"sub": null}), "required claim"),
        (json!({"tenant_id": null}), "tenant_id"),
        (json!({"tenant_id": "acme"}), "tenant_id"),
    ];
    for (extra, why) in cases {
        rejected(get(&srv, &hs(&claims(ta, extra)), "/v1/whoami").await, why).await;
    }
    // within the 120 s leeway, clocks may disagree
    let skewed = hs(&claims(ta, json!({"exp": now() - 60, "nbf": now() + 60})));
    assert_eq!(
        get(&srv, &skewed, "/v1/whoami").await.status(),
        StatusCode::OK
    );
    // a token signed with another secret
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long!!"),
        None,
        &claims(ta, json!({})),
    );
    rejected(get(&srv, &forged, "/v1/whoami").await, "signature").await;
    // alg=none and garbage
    let mut parts = hs(&claims(ta, json!({})))
        .split('.')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0".into(); // {"alg":"none","typ":"JWT"}
    rejected(
        get(&srv, &format!("{}.{}.", parts[0], parts[1]), "/v1/whoami").await,
        "neither an API key nor a JWT",
    )
    .await;
    rejected(get(&srv, "not-a-token", "/v1/whoami").await, "neither").await;
    // RS256 tokens are refused when no JWKS is configured
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa.pem")).unwrap();
    let rs = sign(Algorithm::RS256, &rsa, Some("k1"), &claims(ta, json!({})));
    rejected(get(&srv, &rs, "/v1/whoami").await, "no JWKS").await;
    // a deleted tenant's tokens reach nothing
    let resp = srv
        .op(Method::DELETE, &format!("/v1/tenants/{ta}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let token = hs(&claims(ta, json!({})));
    problem(
        get(&srv, &token, "/v1/whoami").await,
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    )
    .await;
    srv.stop().await;
}

pub async fn tokens_are_refused_when_no_method_is_configured() {
    let srv = TestServer::sqlite().await;
    let a = tenant_named(&srv, "Plain").await;
    let token = hs(&claims(a["id"].as_str().unwrap(), json!({})));
    rejected(
        get(&srv, &token, "/v1/whoami").await,
        "HS256 tokens are not accepted",
    )
    .await;
    srv.stop().await;
}

/// A stand-in identity provider: serves whatever key set it holds, and counts downloads.
struct Idp {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

async fn idp() -> Idp {
    let keys: Arc<Mutex<Vec<Jwk>>> = Arc::default();
    let fetches: Arc<AtomicUsize> = Arc::default();
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let set = JwkSet {
                    keys: k.lock().unwrap().clone(),
                };
                axum::Json(set)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp { url, keys, fetches }
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

pub async fn jwks_keys_verify_rs256_es256_and_eddsa_and_refresh_on_unknown_kid() {
    let idp = idp().await;
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(include_bytes!("fixtures/ec.pem")).unwrap();
    let ed = EncodingKey::from_ed_pem(include_bytes!("fixtures/ed25519.pem")).unwrap();
    idp.keys.lock().unwrap().extend([
        public_jwk(&rsa, Algorithm::RS256, "rsa-1"),
        public_jwk(&ec, Algorithm::ES256, "ec-1"),
    ]);
    let url = idp.url.clone();
    let srv = TestServer::start(tenantry_store::testing::sqlite().await, move |c| {
        c.auth.jwt_jwks_url = url;
        c.auth.jwt_issuer = ISSUER.into();
        c.auth.jwt_audience = AUDIENCE.into();
        c.auth.jwt_jwks_min_refresh_seconds = 1;
    })
    .await;
    // the key set is loaded at start-up, without waiting for a token
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while idp.fetches.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "JWKS never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let a = tenant_named(&srv, "Federated").await;
    let ta = a["id"].as_str().unwrap();
    let c = claims(ta, json!({}));
    for (alg, key, kid) in [
        (Algorithm::RS256, &rsa, "rsa-1"),
        (Algorithm::ES256, &ec, "ec-1"),
    ] {
        let resp = get(&srv, &sign(alg, key, Some(kid), &c), "/v1/whoami").await;
        assert_eq!(resp.status(), StatusCode::OK, "{alg:?}");
    }
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        1,
        "known keys are cached"
    );
    // HS256 is off here, and a token must name its key
    rejected(get(&srv, &hs(&c), "/v1/whoami").await, "HS256").await;
    rejected(
        get(&srv, &sign(Algorithm::RS256, &rsa, None, &c), "/v1/whoami").await,
        "kid",
    )
    .await;
    // a key signed by one key but naming another does not verify
    rejected(
        get(
            &srv,
            &sign(Algorithm::RS256, &rsa, Some("ec-1"), &c),
            "/v1/whoami",
        )
        .await,
        "algorithm",
    )
    .await;

    // the provider rotates in an EdDSA key: the unknown kid triggers a download
    let eddsa = sign(Algorithm::EdDSA, &ed, Some("ed-1"), &c);
    // (jsonwebtoken cannot derive an Ed25519 JWK; this is fixtures/ed25519.pem's public key)
    let ed_jwk: Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "ed-1",
        "x": "2_SnjpaSx7-QjHJN70IteH2Ehn4VSom3jZkZR9IsiyA",
    }))
    .unwrap();
    idp.keys.lock().unwrap().push(ed_jwk);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = get(&srv, &eddsa, "/v1/whoami").await;
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was never picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // forged kids cannot make the server hammer the provider: downloads are rate-limited
    let before = idp.fetches.load(Ordering::SeqCst);
    for i in 0..20 {
        let forged = sign(Algorithm::RS256, &rsa, Some(&format!("forged-{i}")), &c);
        rejected(get(&srv, &forged, "/v1/whoami").await, "not known").await;
    }
    let after = idp.fetches.load(Ordering::SeqCst);
    assert!(
        after - before <= 2,
        "{} downloads for 20 unknown kids",
        after - before
    );
    srv.stop().await;
}
