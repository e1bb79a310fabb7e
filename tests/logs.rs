//! Secrets and tokens never reach the logs, even with debug logging on for every crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_debug_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .init();

    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("client_secret_post").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "paula").await;
    let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let upstream = app.introspect(access).await["upstream"]["access_token"].as_str().unwrap().to_owned();
    let refreshed: Value = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    // Failures log their causes; those must not carry secrets either.
    app.exchange_code(&client, &result["code"], &pkce.verifier).await;
    app.introspect_as(RESOURCE_ID, "wrong-secret", access).await;
    app.revoke(&client, refreshed["refresh_token"].as_str().unwrap()).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request finished") && logs.contains("/token"), "nothing was logged:\n{logs}");
    let secrets = [
        ("authorization code", result["code"].as_str()),
        ("access token signature", access.rsplit('.').next().unwrap()),
        ("refresh token", tokens["refresh_token"].as_str().unwrap()),
        ("rotated refresh token", refreshed["refresh_token"].as_str().unwrap()),
        ("upstream access token", upstream.as_str()),
        ("upstream token prefix", "dev_at_"),
        ("upstream refresh token prefix", "dev_rt_"),
        ("client secret", client.client_secret.as_deref().unwrap()),
        ("resource secret", RESOURCE_SECRET),
        ("upstream client secret", UPSTREAM_SECRET),
        ("PKCE verifier", pkce.verifier.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}
