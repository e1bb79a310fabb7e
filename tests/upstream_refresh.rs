//! Upstream tokens kept alive on Redis: refreshed on introspection, once for all replicas,
//! following rotation or its absence, ending the grant on a refusal, surviving outages and
//! crashed lock holders, and (optionally) refreshed ahead of expiry in the background.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Upstream access tokens live two minutes; Tether refreshes within 60 s of expiry.
fn options(kind: Kind, extra: &str) -> Options {
    Options { kind, upstream_ttl: Some(Duration::from_secs(120)), extra: extra.to_owned(), ..Options::default() }
}

async fn upstream_token(app: &TestApp, access: &str) -> String {
    let answer = app.introspect(access).await;
    assert_eq!(answer["active"], true, "{answer}");
    answer["upstream"]["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_upstream_token_about_to_expire_is_refreshed_on_introspection() {
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::OAuth2, "")).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "lia").await["access_token"].as_str().unwrap().to_owned();
    let first = upstream_token(&app, &access).await;
    app.clock.advance(30);
    assert_eq!(upstream_token(&app, &access).await, first, "fresh enough: no refresh");
    assert_eq!(app.upstream.counts().refreshes, 0);

    app.clock.advance(31); // 61 s in: the token expires within the 60 s skew
    let second = upstream_token(&app, &access).await;
    assert_ne!(second, first);
    assert_eq!(app.upstream.counts().refreshes, 1);
    assert!(app.upstream.accepts(&second), "the new upstream token works upstream");
    assert_eq!(upstream_token(&app, &access).await, second, "and is reused, not refreshed again");
    assert_eq!(app.upstream.counts().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_introspections_across_three_instances_refresh_upstream_once() {
    let cluster = TestCluster::spawn(3, options(Kind::OAuth2, "")).await;
    let first = &cluster.apps[0];
    let client = first.register_client("none").await;
    let access = first.tokens_for(&client, "max").await["access_token"].as_str().unwrap().to_owned();
    cluster.advance(61);
    let before = first.upstream.counts().refreshes;

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let app = &cluster.apps[i % 3];
        let request = app
            .api
            .post(app.url("/introspect"))
            .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
            .form(&[("token", access.clone())]);
        calls.spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() });
    }
    let answers: Vec<Value> = calls.join_all().await;
    let tokens: std::collections::HashSet<&str> =
        answers.iter().map(|a| a["upstream"]["access_token"].as_str().unwrap()).collect();
    assert!(answers.iter().all(|a| a["active"] == true), "every caller got an answer");
    assert_eq!(tokens.len(), 1, "every caller got the same fresh token");
    assert_eq!(first.upstream.counts().refreshes - before, 1, "exactly one upstream refresh");
}

#[tokio::test]
async fn a_provider_that_omits_the_refresh_token_keeps_the_old_one_working() {
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::Google, "")).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "ned").await["access_token"].as_str().unwrap().to_owned();
    let mut seen = vec![upstream_token(&app, &access).await];
    for _ in 0..2 {
        app.clock.advance(61);
        seen.push(upstream_token(&app, &access).await);
    }
    assert_eq!(app.upstream.counts().refreshes, 2, "the second refresh used the kept refresh token");
    seen.dedup();
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn a_provider_that_rotates_the_refresh_token_is_followed() {
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::OAuth2, "")).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "oli").await["access_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        app.clock.advance(61);
        upstream_token(&app, &access).await; // the stand-in refuses a rotated-out refresh token
    }
    assert_eq!(app.upstream.counts().refreshes, 3);
}

#[tokio::test]
async fn a_refused_refresh_asks_for_the_person_and_the_client_is_told_to_authorize_again() {
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::OAuth2, "")).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "pia").await;
    let access = tokens["access_token"].as_str().unwrap();
    app.upstream.revoke_all_refresh_tokens(); // the user disconnected the app upstream
    app.clock.advance(61);
    for _ in 0..2 {
        let answer = app.introspect(access).await;
        assert!(answer.get("upstream").is_none() && answer["upstream_error"] == "interaction_required", "{answer}");
    }
    assert_eq!(app.upstream.counts().refreshes, 1, "a dead connection is not refreshed again");
    let body = expect_error(
        app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
        "dead grant",
    )
    .await;
    assert!(body["error_description"].as_str().unwrap().contains("authorize again"), "{body}");
}

#[tokio::test]
async fn upstream_outages_answer_503_and_the_grant_works_once_the_provider_recovers() {
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::OAuth2, "")).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "quy").await["access_token"].as_str().unwrap().to_owned();
    app.clock.advance(61);
    for (case, status, delay) in [("5xx", Some(503), None), ("timeout", None, Some(Duration::from_secs(3)))] {
        app.upstream.fail_token_endpoint(status);
        app.upstream.delay_token_endpoint(delay);
        let response = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &access).await;
        assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"), "{case}");
        expect_error(response, 503, "temporarily_unavailable", case).await;
    }
    app.upstream.fail_token_endpoint(None);
    app.upstream.delay_token_endpoint(None);
    let token = upstream_token(&app, &access).await;
    assert!(app.upstream.accepts(&token), "refreshed once the provider answered again");
}

#[tokio::test]
async fn a_crashed_lock_holder_delays_refresh_only_until_the_lock_expires() {
    let extra = "[upstream]\nrefresh_lock_ms = 2500\nrefresh_wait_ms = 8000\n";
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::OAuth2, extra)).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "ray").await["access_token"].as_str().unwrap().to_owned();
    let gid = jwt_claims(&access)["gid"].as_str().unwrap().to_owned();
    // A replica took the lock (the grant's connection's: its grants share the tokens) and
    // died: nobody releases it.
    let gid = tether::store::connection_of(&gid).unwrap().to_owned();
    let redis = ::redis::Client::open(app.redis.as_ref().unwrap().url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(format!("test:v1:lock:{{{gid}}}"))
        .arg("dead-replica")
        .arg("PX")
        .arg(2500)
        .query_async(&mut conn)
        .await
        .unwrap();
    app.clock.advance(61);
    let started = Instant::now();
    let token = upstream_token(&app, &access).await;
    assert!(started.elapsed() >= Duration::from_millis(1500), "the lock was ignored");
    assert!(app.upstream.accepts(&token));
    assert_eq!(app.upstream.counts().refreshes, 1);
}

#[tokio::test]
async fn background_refresh_renews_recently_used_grants_before_they_expire() {
    let extra = "[upstream]\nbackground_refresh = true\nbackground_interval_secs = 1\nbackground_lead_secs = 200\n";
    let options = Options { upstream_ttl: Some(Duration::from_secs(300)), ..options(Kind::OAuth2, extra) };
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "sol").await["access_token"].as_str().unwrap().to_owned();
    let first = upstream_token(&app, &access).await; // a use the background task sees
    app.clock.advance(160); // 140 s left: within the background lead, not the 60 s skew
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.upstream.counts().refreshes == 0 {
        assert!(Instant::now() < deadline, "the background task did not refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewed = upstream_token(&app, &access).await;
    assert_ne!(renewed, first);
    assert_eq!(app.upstream.counts().refreshes, 1, "introspection found the token already fresh");
}
