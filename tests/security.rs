//! The threat suite: one test per threat, named after it, citing RFC 9700 (OAuth 2.0
//! Security Best Current Practice) or the MCP security best practices. The README's security
//! section maps each threat to its test here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use serde_json::{Value, json};

/// What `/authorize` shows `browser` for `client` and `scope`: 200 (the page) or 302 (upstream).
async fn authorize_status(
    app: &TestApp,
    browser: &Browser,
    client: &TestClient,
    extra: &[(&str, Option<&str>)],
) -> u16 {
    browser.get(&app.authorize_url(client, &Pkce::new(), extra)).await.status().as_u16()
}

/// MCP security best practices, "Confused Deputy Problem": consent per user agent and per
/// client, remembered in a signed cookie; anything new is asked again.
#[tokio::test]
async fn mcp_confused_deputy_consent_is_remembered_only_for_the_same_browser_client_and_scopes() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let other = app.register_client("none").await;
    let browser = app.browser();
    let pkce = Pkce::new();
    let code = app.authorize(&browser, &app.authorize_url(&client, &pkce, &[]), "amy").await["code"].clone();
    assert_eq!(app.exchange_code(&client, &code, &pkce.verifier).await.status(), 200, "a client in use is kept");

    assert_eq!(authorize_status(&app, &browser, &client, &[]).await, 302, "remembered: straight upstream");
    assert_eq!(authorize_status(&app, &browser, &other, &[]).await, 200, "another client is asked");
    assert_eq!(
        authorize_status(&app, &browser, &client, &[("scope", Some("files:read files:write"))]).await,
        200,
        "more scope is asked"
    );
    assert_eq!(
        authorize_status(&app, &browser, &client, &[("prompt", Some("consent"))]).await,
        200,
        "prompt=consent asks"
    );
    assert_eq!(
        authorize_status(
            &app,
            &browser,
            &client,
            &[("resource", Some(OTHER_RESOURCE_URI)), ("scope", Some("calendar:read"))]
        )
        .await,
        200,
        "another resource is asked"
    );
    assert_eq!(authorize_status(&app, &app.browser(), &client, &[]).await, 200, "another browser is asked");
    // A forged or stale cookie is worthless.
    let forged = app.browser();
    forged.client.get(app.url("/healthz")).send().await.unwrap();
    let request = forged
        .client
        .get(app.authorize_url(&client, &Pkce::new(), &[]))
        .header("cookie", format!("tether-consent=c1.k.{}.AAAA", "W3siYyI6IngifV0"))
        .send()
        .await
        .unwrap();
    assert_eq!(request.status(), 200);
    app.clock.advance(604_801);
    assert_eq!(authorize_status(&app, &browser, &client, &[]).await, 200, "the approval expired");
}

#[tokio::test]
async fn mcp_consent_cookies_are_host_prefixed_secure_and_httponly_over_https() {
    let app = TestApp::spawn_with(Backend::Memory, Options { https_issuer: true, ..Options::default() }).await;
    let client = app.register_client("none").await;
    let page = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cookie.starts_with("__Host-tether-binding="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "__Host- cookies have no Domain: {cookie}");
    // Plain-http development: the documented non-prefixed variant, not Secure.
    let dev = TestApp::spawn(Backend::Memory).await;
    let client = dev.register_client("none").await;
    let page = dev.browser().get(&dev.authorize_url(&client, &Pkce::new(), &[])).await;
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("tether-binding=") && !cookie.contains("Secure"), "{cookie}");
}

/// RFC 9700 §4.14.2: refresh token rotation with replay detection.
#[tokio::test]
async fn rfc9700_4_14_2_refresh_token_reuse_after_rotation_revokes_the_whole_grant() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let first = app.tokens_for(&client, "bea").await;
    let old = first["refresh_token"].as_str().unwrap();
    let second: Value = app.refresh(&client, old).await.json().await.unwrap();
    app.clock.advance(31); // past the 30 s grace window
    let reuse = app.refresh(&client, old).await;
    let body = expect_error(reuse, 400, "invalid_grant", "reuse after the grace window").await;
    assert!(body["error_description"].as_str().unwrap().contains("revoked"), "{body}");
    // The attacker and the legitimate client alike lose the family.
    expect_error(
        app.refresh(&client, second["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
        "newest token",
    )
    .await;
    assert_eq!(app.introspect(second["access_token"].as_str().unwrap()).await, json!({"active": false}));
}

/// RFC 9700 §4.14.2 with real clients: retries and parallel refreshes within the grace
/// window get one rotation, the same pair for everyone, on any instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rfc9700_4_14_2_racing_refreshes_across_instances_get_one_rotation_and_the_same_pair() {
    let cluster = TestCluster::spawn(3, Options::default()).await;
    let first = &cluster.apps[0];
    let client = first.register_client("none").await;
    let old = first.tokens_for(&client, "cid").await["refresh_token"].as_str().unwrap().to_owned();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24 {
        let app = &cluster.apps[i % 3];
        let form = [
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", old.clone()),
            ("client_id", client.client_id.clone()),
        ];
        let request = app.api.post(app.url("/token")).form(&form);
        calls.spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        });
    }
    let answers = calls.join_all().await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let pairs: std::collections::HashSet<(String, String)> = answers
        .iter()
        .map(|(_, b)| (b["access_token"].as_str().unwrap().to_owned(), b["refresh_token"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(pairs.len(), 1, "one rotation, one pair for all 24 requests");
    let (access, refresh) = pairs.into_iter().next().unwrap();
    assert_eq!(first.introspect(&access).await["active"], true);
    assert_eq!(first.refresh(&client, &refresh).await.status(), 200, "the successor works");
}
