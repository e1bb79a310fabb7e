//! Client ID Metadata Documents (MCP 2025-11-25, R-08..R-10): an https client_id is fetched,
//! checked and cached; every way a document or its URL can be refused is shown here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::{Duration, Instant};

use common::tls_server::{DocumentServer, Route};
use common::*;
use serde_json::{Value, json};

const DOC: &str = "/oauth/client.json";

/// A Tether that trusts the document server's CA; `allow_loopback` exempts 127.0.0.1/32.
async fn app_for(server: &DocumentServer, allow_loopback: bool, dir: &tempfile::TempDir) -> TestApp {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let allow = if allow_loopback { r#"["127.0.0.1/32"]"# } else { "[]" };
    let extra =
        format!("[client_metadata]\nallow_networks = {allow}\nca_file = \"{}\"\ntimeout_ms = 1000\n", ca.display());
    TestApp::spawn_with(Backend::Memory, Options { extra, ..Options::default() }).await
}

/// Claude Code's document shape: loopback redirect URIs without a port (R-09).
fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Claude Code",
        "client_uri": "https://claude.ai",
        "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

fn document_client(client_id: &str, port: u16) -> TestClient {
    TestClient {
        client_id: client_id.into(),
        client_secret: None,
        redirect_uri: format!("http://127.0.0.1:{port}/callback"),
    }
}

#[tokio::test]
async fn r08_r09_r10_a_document_client_completes_the_flow_on_an_ephemeral_loopback_port() {
    let server = DocumentServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&server, true, &dir).await;
    let client_id = server.url(DOC);
    server.route(DOC, Route::json(&document(&client_id), "max-age=60"));

    let metadata = app.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    assert!(metadata["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));

    let client = document_client(&client_id, 48_123);
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[]);
    // R-10: the page names the document's host and warns that the code goes to localhost.
    let page = app.browser().get(&url).await.text().await.unwrap();
    assert!(page.contains("127.0.0.1") && page.contains("Claude Code"), "{page}");
    assert!(page.contains("this computer (localhost)"), "no localhost warning");

    let result = app.authorize(&app.browser(), &url, "quinn").await;
    let response = app.exchange_code(&client, &result["code"], &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(jwt_claims(tokens["access_token"].as_str().unwrap())["client_id"], client_id.as_str());
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(server.hits(DOC), 1, "the document is fetched once and then cached");
}

#[tokio::test]
async fn r08_documents_are_cached_per_http_headers_and_served_stale_while_their_host_fails() {
    let server = DocumentServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&server, true, &dir).await;
    let client_id = server.url(DOC);
    server.route(DOC, Route::json(&document(&client_id), "max-age=60, stale-if-error=120"));
    let client = document_client(&client_id, 40_000);
    async fn consent_page(app: &TestApp, client: &TestClient) -> u16 {
        app.browser().get(&app.authorize_url(client, &Pkce::new(), &[])).await.status().as_u16()
    }
    let consent_page = async |app: &TestApp| consent_page(app, &client).await;

    assert_eq!(consent_page(&app).await, 200);
    assert_eq!(consent_page(&app).await, 200);
    assert_eq!(server.hits(DOC), 1, "fresh for 60 s");

    app.clock.advance(61);
    server.route(DOC, Route::status(503));
    assert_eq!(consent_page(&app).await, 200, "stale copy serves while the host answers 503");
    assert_eq!(server.hits(DOC), 2, "a stale copy is revalidated");

    app.clock.advance(120);
    assert_eq!(consent_page(&app).await, 400, "past stale-if-error the document is unusable");

    // A 404 is an answer, not an outage: the cached copy is dropped.
    server.route(DOC, Route::json(&document(&client_id), "no-store"));
    assert_eq!(consent_page(&app).await, 200);
    assert_eq!(consent_page(&app).await, 200);
    assert_eq!(server.hits(DOC), 5, "no-store: fetched every time");
}

/// The error page for an authorization request with `client_id` (no redirect may happen).
async fn refusal(app: &TestApp, client_id: &str) -> String {
    let client = document_client(client_id, 40_001);
    let response = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    assert_eq!(response.status(), 400, "{client_id} was not refused");
    assert!(response.headers().get("location").is_none(), "{client_id}: a refused client must not be redirected to");
    response.text().await.unwrap()
}

#[tokio::test]
async fn r08_document_urls_on_internal_addresses_are_refused_before_and_after_dns() {
    let server = DocumentServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&server, false, &dir).await; // no network is exempt
    server.route(DOC, Route::json(&document(&server.url(DOC)), "max-age=60"));
    let port = server.port;
    let cases = [
        (format!("https://127.0.0.1:{port}{DOC}"), "127.0.0.1 is not a public address"),
        // A name is resolved first and refused for what it resolves to.
        (format!("https://localhost:{port}{DOC}"), "is not a public address"),
        ("https://169.254.169.254/latest/meta-data/client.json".into(), "169.254.169.254 is not a public address"),
        ("https://[::ffff:169.254.169.254]/client.json".into(), "is not a public address"),
        ("https://10.0.0.1/client.json".into(), "10.0.0.1 is not a public address"),
        ("https://192.168.1.1/client.json".into(), "192.168.1.1 is not a public address"),
        ("https://[::1]/client.json".into(), "::1 is not a public address"),
        ("https://[fd00:ec2::254]/client.json".into(), "fd00:ec2::254 is not a public address"),
        ("https://0.0.0.0/client.json".into(), "0.0.0.0 is not a public address"),
        ("http://example.com/client.json".into(), "This application is not registered"),
        ("https://claude.ai".into(), "must have a path"),
        ("https://claude.ai/a/../client.json".into(), "must not contain . or .. segments"),
        ("https://user:pw@claude.ai/client.json".into(), "must not contain credentials"),
    ];
    for (client_id, expected) in cases {
        let page = refusal(&app, &client_id).await;
        assert!(page.contains(expected), "{client_id}: expected `{expected}` in\n{page}");
    }
    assert_eq!(server.hits(DOC), 0, "nothing may reach an internal address");
}

#[tokio::test]
async fn r08_documents_that_misbehave_are_refused() {
    let server = DocumentServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&server, true, &dir).await;
    let doc = |path: &str| document(&server.url(path));
    let mut slow = Route::json(&doc("/slow"), "max-age=60");
    slow.delay = Some(Duration::from_secs(5));
    let mut redirect = Route::status(302);
    redirect.headers.push(("Location".into(), server.url("/elsewhere")));
    let cases: Vec<(&str, Route, &str)> = vec![
        ("/redirect", redirect, "redirects are not followed"),
        (
            "/big",
            Route::json(&json!({"client_id": server.url("/big"), "client_name": "x".repeat(20_000)}), "max-age=60"),
            "larger than 10240 bytes",
        ),
        ("/slow", slow, "timed out"),
        ("/gone", Route::status(404), "HTTP 404"),
        (
            "/mismatch",
            Route::json(&document("https://127.0.0.1/other.json"), "max-age=60"),
            "not the URL it was fetched from",
        ),
        (
            "/html",
            Route { status: 200, headers: vec![], body: b"<html>hello</html>".to_vec(), delay: None },
            "not a JSON client metadata object",
        ),
        (
            "/secret",
            Route::json(
                &json!({"client_id": server.url("/secret"), "client_name": "C", "redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "max-age=60",
            ),
            "is not supported",
        ),
        (
            "/no-redirects",
            Route::json(&json!({"client_id": server.url("/no-redirects"), "client_name": "C"}), "max-age=60"),
            "redirect_uris is missing",
        ),
        (
            "/evil-redirect",
            Route::json(
                &json!({"client_id": server.url("/evil-redirect"), "client_name": "C", "redirect_uris": ["javascript:alert(1)"]}),
                "max-age=60",
            ),
            "cannot be a redirect target",
        ),
    ];
    for (path, route, expected) in cases {
        server.route(path, route);
        let started = Instant::now();
        let page = refusal(&app, &server.url(path)).await;
        assert!(page.contains(expected), "{path}: expected `{expected}` in\n{page}");
        assert!(started.elapsed() < Duration::from_secs(4), "{path}: took {:?}", started.elapsed());
    }
    assert_eq!(server.hits("/elsewhere"), 0, "the redirect was followed");

    // A redirect URI the document does not list.
    server.route(DOC, Route::json(&doc(DOC), "max-age=60"));
    let mut client = document_client(&server.url(DOC), 40_002);
    client.redirect_uri = "https://evil.example/callback".into();
    let page = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("redirect_uri is not registered"));

    // A server whose certificate this Tether does not trust.
    let stranger = DocumentServer::start().await;
    stranger.route(DOC, Route::json(&document(&stranger.url(DOC)), "max-age=60"));
    let page = refusal(&app, &stranger.url(DOC)).await;
    assert!(page.contains("could not be fetched"), "{page}");
}

#[tokio::test]
async fn r08_the_token_endpoint_refuses_a_document_client_whose_document_went_bad() {
    let server = DocumentServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&server, true, &dir).await;
    let client_id = server.url(DOC);
    server.route(DOC, Route::json(&document(&client_id), "no-cache"));
    let client = document_client(&client_id, 40_003);
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "rita").await;
    server.route(DOC, Route::json(&json!({"client_id": "https://someone.else/doc", "client_name": "x", "redirect_uris": ["https://x.example/cb"]}), "no-cache"));
    expect_error(
        app.exchange_code(&client, &result["code"], &pkce.verifier).await,
        401,
        "invalid_client",
        "document went bad",
    )
    .await;
}

#[tokio::test]
async fn r08_with_documents_disabled_a_url_client_id_is_just_unknown() {
    let extra = "[client_metadata]\nenabled = false\n".to_owned();
    let app = TestApp::spawn_with(Backend::Memory, Options { extra, ..Options::default() }).await;
    assert_eq!(
        app.get_json("/.well-known/oauth-authorization-server").await["client_id_metadata_document_supported"],
        false
    );
    let page = refusal(&app, "https://claude.ai/oauth/claude-code-client-metadata").await;
    assert!(page.contains("not registered"));
}
