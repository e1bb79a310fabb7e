//! Redis going away: requests fail fast with 503 `temporarily_unavailable` (never a hang, a
//! panic or a 500), `/readyz` reports it while `/healthz` does not, and Tether recovers by
//! itself once Redis is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

async fn readyz(app: &TestApp) -> u16 {
    app.api.get(app.url("/readyz")).send().await.unwrap().status().as_u16()
}

async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz(app).await != 200 {
        assert!(Instant::now() < deadline, "Tether did not become ready again after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every store-backed endpoint answers 503 (JSON, or a page for the browser step).
async fn assert_unavailable(app: &TestApp, client: &TestClient, tokens: &Value, how: &str) {
    let started = Instant::now();
    let introspect = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(introspect.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"), "{how}");
    expect_error(introspect, 503, "temporarily_unavailable", &format!("{how}: introspect")).await;
    expect_error(
        app.refresh(client, tokens["refresh_token"].as_str().unwrap()).await,
        503,
        "temporarily_unavailable",
        &format!("{how}: refresh"),
    )
    .await;
    let register = app
        .register(&serde_json::json!({"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"}))
        .await;
    expect_error(register, 503, "temporarily_unavailable", &format!("{how}: register")).await;
    let page = app.browser().get(&app.authorize_url(client, &Pkce::new(), &[])).await;
    assert_eq!(page.status(), 503, "{how}: authorize page");
    assert_eq!(readyz(app).await, 503, "{how}: readyz");
    let health = app.api.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "{how}: healthz does not depend on Redis");
    // Six requests against a 500 ms store deadline: well under the 10 s a hang would take.
    assert!(started.elapsed() < Duration::from_secs(8), "{how}: took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_stopped_redis_gives_503_and_tether_recovers_when_it_returns() {
    let mut app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "nina").await;

    app.redis.as_mut().unwrap().stop();
    assert_unavailable(&app, &client, &tokens, "redis stopped").await;

    // Back, but empty (nothing was persisted): the old grant is gone, new flows work.
    app.redis.as_mut().unwrap().restart();
    wait_ready(&app).await;
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], false);
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "nina").await;
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
}

#[tokio::test]
async fn a_frozen_redis_gives_503_within_the_deadline_and_no_data_is_lost() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "omar").await;

    app.redis.as_ref().unwrap().pause();
    assert_unavailable(&app, &client, &tokens, "redis frozen").await;
    app.redis.as_ref().unwrap().resume();
    wait_ready(&app).await;

    // Nothing was lost or half-written: the same tokens still work, and the refresh token
    // that failed with 503 was not rotated away.
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    let refreshed = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);
}
