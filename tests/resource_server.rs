//! The Rust client module for MCP servers against a real Tether.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use secrecy::ExposeSecret;
use tether::resource_server::{IntrospectionClient, IntrospectionConfig, IntrospectionError, TokenStatus};

fn client(app: &TestApp, secret: &str, max_cache: Duration) -> IntrospectionClient {
    let mut config = IntrospectionConfig::new(app.url("/introspect"), RESOURCE_ID, secret);
    config.max_cache = max_cache;
    IntrospectionClient::with_clock(config, Arc::new(app.clock.clone())).unwrap()
}

#[tokio::test]
async fn resolves_a_token_to_the_upstream_credential_and_caches_it_briefly() {
    let app = TestApp::spawn(Backend::Memory).await;
    let registered = app.register_client("none").await;
    let tokens = app.tokens_for(&registered, "sam").await;
    let access = tokens["access_token"].as_str().unwrap();

    let cached = client(&app, RESOURCE_SECRET, Duration::from_secs(30));
    let uncached = client(&app, RESOURCE_SECRET, Duration::ZERO);
    let TokenStatus::Active(token) = cached.introspect(access).await.unwrap() else { panic!("inactive") };
    assert_eq!(token.sub, app.upstream.user_id("sam").to_string());
    assert_eq!(token.client_id, registered.client_id);
    assert!(token.has_scope("files:read"));
    assert_eq!(token.upstream.provider, "dev");
    assert!(token.upstream.access_token.expose_secret().starts_with("dev_at_"));
    assert!(!format!("{token:?}").contains("dev_at_"), "Debug must not print the upstream token");

    // Revoked: the uncached client sees it at once; the cached one within its bound.
    assert_eq!(app.revoke(&registered, access).await.status(), 200);
    assert!(matches!(uncached.introspect(access).await.unwrap(), TokenStatus::Inactive));
    assert!(matches!(cached.introspect(access).await.unwrap(), TokenStatus::Active(_)), "served from the cache");
    app.clock.advance(31);
    assert!(matches!(cached.introspect(access).await.unwrap(), TokenStatus::Inactive), "cache outlived max_cache");
}

#[tokio::test]
async fn a_long_cache_still_ends_when_the_token_expires() {
    let app = TestApp::spawn(Backend::Memory).await;
    let registered = app.register_client("none").await;
    let access = app.tokens_for(&registered, "tess").await["access_token"].as_str().unwrap().to_owned();
    let long = client(&app, RESOURCE_SECRET, Duration::from_secs(86_400));
    assert!(matches!(long.introspect(&access).await.unwrap(), TokenStatus::Active(_)));
    app.clock.advance(606);
    assert!(matches!(long.introspect(&access).await.unwrap(), TokenStatus::Inactive));
    assert!(matches!(long.introspect("not-a-token").await.unwrap(), TokenStatus::Inactive));
}

#[tokio::test]
async fn reports_bad_credentials_and_outages_distinctly() {
    let mut app = TestApp::spawn(Backend::Redis).await;
    let registered = app.register_client("none").await;
    let access = app.tokens_for(&registered, "uma").await["access_token"].as_str().unwrap().to_owned();
    let wrong = client(&app, "wrong-secret", Duration::ZERO);
    assert!(matches!(wrong.introspect(&access).await, Err(IntrospectionError::Unauthorized)));

    let right = client(&app, RESOURCE_SECRET, Duration::ZERO);
    app.redis.as_mut().unwrap().stop();
    match right.introspect(&access).await {
        Err(IntrospectionError::Unavailable { retry_after }) => assert_eq!(retry_after, Some(1)),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let mut config = IntrospectionConfig::new("http://127.0.0.1:9/introspect", RESOURCE_ID, RESOURCE_SECRET);
    config.timeout = Duration::from_secs(2);
    let nowhere = IntrospectionClient::new(config).unwrap();
    assert!(matches!(nowhere.introspect(&access).await, Err(IntrospectionError::Unavailable { .. })));
}
