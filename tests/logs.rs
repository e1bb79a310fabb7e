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
        // Debug for every crate, except the test's own HTTP client (its cookie jar logs the
        // cookies it receives: that is the test browser talking, not Tether).
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug,cookie_store=off,reqwest=off"))
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .init();

    // Keys from files, as in production, so their material is known to look for.
    let keys = tempfile::tempdir().unwrap();
    let encryption = tether::crypto::seal::KeyRing::generate_spec("enc-log");
    let signing = tether::crypto::signing::SigningKeys::generate_spec("sig-log").unwrap();
    std::fs::write(keys.path().join("encryption"), &encryption).unwrap();
    std::fs::write(keys.path().join("signing"), &signing).unwrap();
    let cluster = TestCluster::spawn_with_keys(1, Options::default(), keys).await;
    let app = &cluster.apps[0];
    let registration: Value = app
        .register(&serde_json::json!({"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"}))
        .await
        .json()
        .await
        .unwrap();
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
    app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &format!("{access}x")).await;
    app.revoke(&client, refreshed["refresh_token"].as_str().unwrap()).await;

    // A refused consent and a refused callback log their reasons.
    let browser = app.browser();
    let page = browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    let binding = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let consent = consent_id(&page.text().await.unwrap());
    app.browser().consent(&app.url("/consent"), &consent, "approve").await;
    browser.get(&app.url("/callback?state=forged&code=stolen-code-value")).await;

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
        ("registration access token", registration["registration_access_token"].as_str().unwrap()),
        ("consent id", consent.as_str()),
        ("browser binding cookie", binding.as_str()),
        ("code in a forged callback", "stolen-code-value"),
        ("encryption key", encryption.split_once(':').unwrap().1),
        ("signing key", signing.split_once(':').unwrap().1),
    ];
    for (what, secret) in secrets {
        if let Some(at) = logs.find(secret) {
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("the {what} appears in the logs:\n{}", &logs[line_start..line_end]);
        }
    }
}
