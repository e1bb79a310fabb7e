//! The audit trail on the real application and a real Redis: the events of a whole flow in
//! order and without a secret, reuse and replay, coalesced credential releases and grant use,
//! tombstones, and the signed webhook.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn grant_of(tokens: &Value) -> String {
    jwt_claims(tokens["access_token"].as_str().unwrap())["gid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_whole_flow_leaves_its_events_in_order_and_no_secret_in_any() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("client_secret_basic").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "ada").await;
    let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    let grant = grant_of(&tokens);
    let mut released = Vec::new();
    for _ in 0..3 {
        let answer = app.introspect(tokens["access_token"].as_str().unwrap()).await;
        released.push(answer["upstream"]["access_token"].as_str().unwrap().to_owned());
    }
    let refreshed: Value = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(app.revoke(&client, refreshed["refresh_token"].as_str().unwrap()).await.status(), 200);

    let events = events_until(&app, |events| has(events, "grant.revoked")).await;
    assert_eq!(
        types(&events),
        [
            "client.registered",
            "consent.approved",
            "user.signed_in",
            "connection.made",
            "grant.issued",
            "token.issued",
            "credential.released",
            "token.issued",
            "grant.revoked",
        ],
        "three introspections in one interval are one event until it ends"
    );
    let mut ids = std::collections::HashSet::new();
    for event in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], app.issuer);
        assert!(ids.insert(event["id"].as_str().unwrap().to_owned()), "ids are unique");
        let time = event["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "RFC 3339: {time}");
        assert_eq!(event["data"]["request"]["ip"], "127.0.0.1", "{event}");
    }
    let by_type = |kind: &str| events.iter().filter(|e| e["type"] == format!("dev.tether.{kind}")).collect::<Vec<_>>();
    let issued = by_type("grant.issued")[0];
    assert_eq!(issued["subject"], grant);
    assert_eq!(issued["data"]["client_id"], client.client_id);
    assert_eq!(issued["data"]["resource"], RESOURCE_ID);
    let release = by_type("credential.released")[0];
    assert_eq!(release["data"]["actor"], serde_json::json!({"type": "resource", "id": RESOURCE_ID}));
    assert_eq!(release["data"]["count"], 1);
    let thumbprint = &tether::crypto::hash::digest(&released[0])[..16];
    assert_eq!(release["data"]["upstream_token_thumbprint"], thumbprint, "names the released token");
    let revoked = by_type("grant.revoked")[0];
    assert_eq!(revoked["data"]["reason"], "client_revocation");
    assert_eq!(revoked["data"]["actor"]["type"], "client");
    assert_eq!(by_type("token.issued")[1]["data"]["details"]["grant_type"], "refresh_token");

    let text = serde_json::to_string(&events).unwrap();
    let secrets = [
        Some(result["code"].as_str()),
        client.client_secret.as_deref(),
        tokens["access_token"].as_str(),
        tokens["refresh_token"].as_str(),
        refreshed["access_token"].as_str(),
        refreshed["refresh_token"].as_str(),
        Some(released[0].as_str()),
        Some(pkce.verifier.as_str()),
    ];
    for secret in secrets.into_iter().flatten() {
        assert!(!text.contains(secret), "a secret is in the audit trail");
    }
    assert!(!text.contains("dev_rt_"), "an upstream refresh token is in the audit trail");
}

#[tokio::test]
async fn a_revoked_grant_keeps_a_tombstone_and_loses_its_upstream_tokens() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "bea").await;
    let grant = grant_of(&tokens);
    assert_eq!(app.revoke(&client, tokens["access_token"].as_str().unwrap()).await.status(), 200);
    let redis = app.redis.as_ref().unwrap();
    let key = common::grant_key(&grant);
    let fields = redis.cli(&["HGETALL", &key]);
    let fields: Vec<&str> = fields.lines().collect();
    let get = |name: &str| fields.iter().position(|f| *f == name).map(|i| fields[i + 1]);
    assert_eq!(get("st"), Some("revoked"));
    assert_eq!(get("rr"), Some("client_revocation"));
    assert_eq!(get("rb"), Some(format!("client:{}", client.client_id).as_str()));
    assert!(get("ra").is_some_and(|at| at.parse::<i64>().is_ok()), "{fields:?}");
    assert_eq!(get("up"), None, "the sealed upstream tokens are deleted");
    // Its connection's tokens too: no other grant used them.
    let link = common::link_key(&grant);
    assert_eq!(redis.cli(&["HGET", &link, "st"]).trim(), "ended");
    assert_eq!(redis.cli(&["HEXISTS", &link, "up"]).trim(), "0", "the connection's tokens are deleted");
    let ttl: i64 = redis.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((2_591_000..=2_592_000).contains(&ttl), "kept for the tombstone's 30 days, {ttl} s left");
    // Revoking again changes nothing: the first tombstone stays.
    assert_eq!(app.revoke(&client, tokens["access_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(redis.cli(&["HGET", &key, "ra"]).trim(), get("ra").unwrap());
    let events = events_until(&app, |events| has(events, "grant.revoked")).await;
    assert_eq!(types(&events).iter().filter(|t| *t == "grant.revoked").count(), 1, "one event for one revocation");
}

#[tokio::test]
async fn reuse_and_replay_are_recorded_with_the_revocations_they_cause() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let first = app.tokens_for(&client, "cy").await;
    app.refresh(&client, first["refresh_token"].as_str().unwrap()).await;
    app.clock.advance(31);
    app.refresh(&client, first["refresh_token"].as_str().unwrap()).await;

    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "cy").await;
    app.exchange_code(&client, &result["code"], &pkce.verifier).await;
    app.exchange_code(&client, &result["code"], &pkce.verifier).await;

    let events = events_until(&app, |events| {
        has(events, "code.replayed") && types(events).iter().filter(|t| *t == "grant.revoked").count() == 2
    })
    .await;
    let tail: Vec<&Value> =
        events.iter().filter(|e| e["data"]["outcome"] == "denied" || e["type"] == "dev.tether.grant.revoked").collect();
    let summary: Vec<(String, String)> = tail
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["data"]["reason"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        summary,
        [
            ("dev.tether.token.reuse_detected".to_owned(), String::new()),
            ("dev.tether.grant.revoked".to_owned(), "refresh_reuse".to_owned()),
            ("dev.tether.code.replayed".to_owned(), String::new()),
            ("dev.tether.grant.revoked".to_owned(), "code_replay".to_owned()),
        ]
    );
    assert_eq!(tail[1]["data"]["actor"]["type"], "system");
}

#[tokio::test]
async fn releases_are_coalesced_per_interval_and_the_grant_records_its_use() {
    let extra = "[audit]\nrelease_interval_secs = 1\n".to_owned();
    let app = TestApp::spawn_with(Backend::Redis, Options { extra, ..Options::default() }).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "dee").await;
    for _ in 0..10 {
        assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    }
    app.clock.advance(2); // the interval ends
    let counted = |events: &[Value]| -> u64 {
        events
            .iter()
            .filter(|e| e["type"] == "dev.tether.credential.released")
            .map(|e| e["data"]["count"].as_u64().unwrap())
            .sum()
    };
    let events = events_until(&app, |events| counted(events) == 10).await;
    let releases: Vec<&Value> = events.iter().filter(|e| e["type"] == "dev.tether.credential.released").collect();
    assert_eq!(releases.len(), 2, "the first release, then the rest of the interval");
    assert_eq!((releases[0]["data"]["count"].as_u64(), releases[1]["data"]["count"].as_u64()), (Some(1), Some(9)));
    assert!(releases[1]["data"]["details"]["from"].is_string() && releases[1]["data"]["details"]["until"].is_string());

    let key = common::grant_key(&grant_of(&tokens));
    let redis = app.redis.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["HGET", &key, "uc"]).trim() != "10" {
        assert!(Instant::now() < deadline, "use count {}", redis.cli(&["HGET", &key, "uc"]));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis.cli(&["HGET", &key, "lb"]).trim(), RESOURCE_ID);
    let last_used: i64 = redis.cli(&["HGET", &key, "lu"]).trim().parse().unwrap();
    assert!((tether::clock::Clock::now(&app.clock) - last_used).abs() < 5, "last used {last_used}");
}

/// A webhook receiver: what it was sent (signature, type header, body).
async fn receiver() -> (String, Arc<Mutex<Vec<(String, String, String)>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            keep.lock().unwrap().push((header("tether-signature"), header("tether-event"), body));
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn the_webhook_gets_the_chosen_types_signed() {
    let (url, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec-audit-0123456789";
    std::fs::write(dir.path().join("audit-secret"), secret).unwrap();
    let extra = format!(
        "[audit]\nwebhook = \"{url}\"\nwebhook_secret_file = \"{}/audit-secret\"\nwebhook_types = [\"grant.issued\", \"grant.revoked\"]\n",
        dir.path().display()
    );
    let app = TestApp::spawn_with(Backend::Memory, Options { extra, ..Options::default() }).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "eve").await;
    app.revoke(&client, tokens["access_token"].as_str().unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the webhook did not get both events");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = received.lock().unwrap().clone();
    let now = tether::clock::Clock::now(&tether::clock::SystemClock);
    let mut kinds = Vec::new();
    for (signature, kind, body) in &received {
        assert!(tether::webhook::verify(secret, signature, body.as_bytes(), now, 300), "signature of {body}");
        assert!(!tether::webhook::verify(
            secret,
            signature,
            body.replace("dev.tether.grant.", "dev.tether.grunt.").as_bytes(),
            now,
            300
        ));
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["type"].as_str(), Some(kind.as_str()));
        kinds.push(kind.clone());
    }
    kinds.sort();
    assert_eq!(kinds, ["dev.tether.grant.issued", "dev.tether.grant.revoked"], "only the chosen types");
}

#[tokio::test]
async fn deleting_a_client_revokes_every_grant_it_holds() {
    let app = TestApp::spawn(Backend::Redis).await;
    let response = app
        .register(&serde_json::json!({
            "client_name": "Leaving", "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"]
        }))
        .await;
    let registration: Value = response.json().await.unwrap();
    let client = TestClient {
        client_id: registration["client_id"].as_str().unwrap().to_owned(),
        client_secret: None,
        redirect_uri: CLIENT_REDIRECT.to_owned(),
    };
    let first = app.tokens_for(&client, "fay").await;
    let second = app.tokens_for(&client, "gus").await;
    let other = app.register_client("none").await;
    let kept = app.tokens_for(&other, "fay").await;

    let uri = registration["registration_client_uri"].as_str().unwrap();
    let token = registration["registration_access_token"].as_str().unwrap();
    assert_eq!(app.api.delete(uri).bearer_auth(token).send().await.unwrap().status(), 204);
    // RFC 7592 §2.3: every grant and active token of the client ends at once.
    for tokens in [&first, &second] {
        assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], false);
    }
    assert_eq!(app.introspect(kept["access_token"].as_str().unwrap()).await["active"], true, "another client's grant");
    let events = events_until(&app, |events| {
        has(events, "client.deleted") && types(events).iter().filter(|t| *t == "grant.revoked").count() == 2
    })
    .await;
    let revoked: Vec<&Value> = events.iter().filter(|e| e["type"] == "dev.tether.grant.revoked").collect();
    for event in revoked {
        assert_eq!(event["data"]["reason"], "client_deleted");
        assert_eq!(event["data"]["actor"], serde_json::json!({"type": "client", "id": client.client_id}));
    }
}
