//! The connect flow: an MCP server asks for a link for one of its sessions, the user walks
//! consent and the upstream sign-in, and the server resolves the session to the upstream
//! credential. On a real Redis, with the upstream stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The MCP server's side: its resource credentials.
struct Server<'a> {
    app: &'a TestApp,
    id: &'a str,
    secret: &'a str,
}

impl Server<'_> {
    fn files(app: &TestApp) -> Server<'_> {
        Server { app, id: RESOURCE_ID, secret: RESOURCE_SECRET }
    }

    fn calendar(app: &TestApp) -> Server<'_> {
        Server { app, id: OTHER_RESOURCE_ID, secret: OTHER_RESOURCE_SECRET }
    }

    async fn connect(&self, session: &str) -> Value {
        let response = self.post("/connect", json!({"session": session})).await;
        assert_eq!(response.status(), 201, "POST /connect");
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.app.api.post(self.app.url(path)).basic_auth(self.id, Some(self.secret)).json(&body).send().await.unwrap()
    }

    async fn status(&self, id: &str, wait: u64) -> reqwest::Response {
        let url = self.app.url(&format!("/connect/{id}?wait={wait}"));
        self.app.api.get(url).basic_auth(self.id, Some(self.secret)).send().await.unwrap()
    }

    async fn resolve(&self, session: &str) -> Value {
        let response = self.post("/connect/resolve", json!({"session": session})).await;
        assert_eq!(response.status(), 200, "resolve");
        response.json().await.unwrap()
    }

    async fn disconnect(&self, session: &str) -> Value {
        let url = self.app.url(&format!("/connect/{session}"));
        let response = self.app.api.delete(url).basic_auth(self.id, Some(self.secret)).send().await.unwrap();
        assert_eq!(response.status(), 200, "disconnect");
        response.json().await.unwrap()
    }
}

/// In `browser`: opens the link, answers the consent page, signs in upstream as `user`,
/// and returns the last page (after `/connect/finish`).
async fn walk(app: &TestApp, browser: &Browser, link: &str, user: &str, decision: &str) -> reqwest::Response {
    let page = browser.get(link).await;
    assert_eq!(page.status(), 200, "the link opens the consent page");
    let html = page.text().await.unwrap();
    assert!(html.contains("Connect Dev Upstream to Files?"), "{html}");
    let next = browser.consent(&app.url("/consent"), &consent_id(&html), decision).await;
    assert_eq!(next.status(), 303);
    let mut to = location(&next);
    if decision == "approve" {
        let back = browser.upstream_login(&to, user, "approve").await;
        let to_finish = browser.get(&location(&back)).await;
        assert_eq!(to_finish.status(), 302, "the callback sends the browser to /connect/finish");
        to = location(&to_finish);
    }
    assert!(to.starts_with(&app.url("/connect/finish?")), "{to}");
    browser.get(&to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_connects_a_session_and_resolves_it_to_the_upstream_credential() {
    let app = TestApp::spawn(Backend::Redis).await;
    let files = Server::files(&app);
    let started = files.connect("chat-42").await;
    assert_eq!(started["session"], "chat-42");
    assert_eq!(started["expires_in"], 600);
    let link = started["connect_url"].as_str().unwrap();
    assert!(link.starts_with(&app.url("/connect/link/")), "{link}");
    let id = started["id"].as_str().unwrap().to_owned();
    let pending: Value = files.status(&id, 0).await.json().await.unwrap();
    assert_eq!(pending["status"], "pending");
    assert_eq!(files.resolve("chat-42").await, json!({"connected": false, "session": "chat-42"}));

    // The server long-polls while the user walks the flow; the answer comes when it is done.
    let waiting = {
        let (api, url) = (app.api.clone(), app.url(&format!("/connect/{id}?wait=30")));
        tokio::spawn(async move {
            let response = api.get(url).basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET)).send().await.unwrap();
            (Instant::now(), response.json::<Value>().await.unwrap())
        })
    };
    let browser = app.browser();
    let done = walk(&app, &browser, link, "ada", "approve").await;
    let finished = Instant::now();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Files can now act on your behalf"));
    let (answered, status) = waiting.await.unwrap();
    assert_eq!(status["status"], "connected", "{status}");
    assert!(answered.duration_since(finished) < Duration::from_secs(2), "the long-poll answered late");

    let resolved = files.resolve("chat-42").await;
    assert_eq!(resolved["connected"], true, "{resolved}");
    assert_eq!(resolved["sub"], app.upstream.user_id("ada").to_string());
    assert_eq!(resolved["upstream"]["provider"], "dev");
    let token = resolved["upstream"]["access_token"].as_str().unwrap();
    assert_eq!(app.upstream_user(token).await["login"], "ada", "the credential works upstream");

    // The session is the caller's alone.
    let calendar = Server::calendar(&app);
    assert_eq!(calendar.resolve("chat-42").await["connected"], false, "another server resolves nothing");
    assert_eq!(calendar.status(&id, 0).await.status(), 404, "nor sees the connection");
    assert_eq!(calendar.disconnect("chat-42").await["disconnected"], false, "nor disconnects it");
    assert_eq!(files.resolve("chat-42").await["connected"], true);

    // The link is dead once used, in this browser and any other.
    let again = browser.get(link).await;
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("expired or was already used"));
    assert_eq!(app.browser().get(link).await.status(), 400);

    // Disconnecting ends it.
    assert_eq!(files.disconnect("chat-42").await["disconnected"], true);
    assert_eq!(files.resolve("chat-42").await["connected"], false);
    assert_eq!(files.disconnect("chat-42").await["disconnected"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_belongs_to_the_first_browser_and_expires() {
    let app = TestApp::spawn(Backend::Redis).await;
    let files = Server::files(&app);
    let started = files.connect("s-1").await;
    let link = started["connect_url"].as_str().unwrap();
    let first = app.browser();
    assert_eq!(first.get(link).await.status(), 200);
    assert_eq!(first.get(link).await.status(), 200, "the same browser may reload the page");
    let second = app.browser().get(link).await;
    assert_eq!(second.status(), 403, "a second browser is refused");
    assert!(second.text().await.unwrap().contains("another browser"));

    let late = files.connect("s-2").await;
    app.clock.advance(601);
    let expired = app.browser().get(late["connect_url"].as_str().unwrap()).await;
    assert_eq!(expired.status(), 400, "an expired link");
    let status: Value = files.status(late["id"].as_str().unwrap(), 0).await.json().await.unwrap();
    assert_eq!(status["status"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_consent_is_reported_to_the_server_and_kills_the_link() {
    let app = TestApp::spawn(Backend::Redis).await;
    let files = Server::files(&app);
    let started = files.connect("s-deny").await;
    let link = started["connect_url"].as_str().unwrap();
    let browser = app.browser();
    let page = walk(&app, &browser, link, "bo", "deny").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("You declined"));
    let status: Value = files.status(started["id"].as_str().unwrap(), 0).await.json().await.unwrap();
    assert_eq!(status["status"], "denied", "{status}");
    assert_eq!(files.resolve("s-deny").await["connected"], false);
    assert_eq!(browser.get(link).await.status(), 400, "the link is dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_a_session_replaces_its_account_and_ends_the_old_grant() {
    let app = TestApp::spawn(Backend::Redis).await;
    let files = Server::files(&app);
    let first = files.connect("s-re").await;
    walk(&app, &app.browser(), first["connect_url"].as_str().unwrap(), "cy", "approve").await;
    let before = files.resolve("s-re").await;
    let second = files.connect("s-re").await;
    walk(&app, &app.browser(), second["connect_url"].as_str().unwrap(), "dee", "approve").await;
    let after = files.resolve("s-re").await;
    assert_eq!(after["sub"], app.upstream.user_id("dee").to_string());
    assert_ne!(before["upstream"]["access_token"], after["upstream"]["access_token"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_events_are_published_on_redis() {
    let app = TestApp::spawn(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    // A server sharing the Redis subscribes to its channel.
    let subscription = redis.subscribe("test:connect:files");
    let files = Server::files(&app);
    let started = files.connect("s-pub").await;
    walk(&app, &app.browser(), started["connect_url"].as_str().unwrap(), "eve", "approve").await;
    let event = subscription.next_message(Duration::from_secs(5)).expect("no event published");
    let event: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["type"], "connection.connected");
    assert_eq!(event["id"], started["id"]);
    assert_eq!(event["session"], "s-pub");
    assert_eq!(event["resource"], "files");
}

#[tokio::test]
async fn the_api_refuses_bad_callers_and_bad_input_with_oauth_errors() {
    let app = TestApp::spawn(Backend::Memory).await;
    let unauthenticated = app.api.post(app.url("/connect")).json(&json!({"session": "x"})).send().await.unwrap();
    expect_error(unauthenticated, 401, "invalid_client", "no credentials").await;
    let wrong = Server { app: &app, id: RESOURCE_ID, secret: "wrong" };
    expect_error(wrong.post("/connect", json!({"session": "x"})).await, 401, "invalid_client", "wrong secret").await;
    let files = Server::files(&app);
    expect_error(files.post("/connect", json!({})).await, 400, "invalid_request", "no session").await;
    let long = "x".repeat(257);
    expect_error(files.post("/connect", json!({"session": long})).await, 400, "invalid_request", "long session").await;
    let scope = json!({"session": "x", "scope": "files:admin"});
    expect_error(files.post("/connect", scope).await, 400, "invalid_scope", "unknown scope").await;
    let not_json = app
        .api
        .post(app.url("/connect"))
        .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(not_json, 400, "invalid_request", "malformed JSON").await;
    expect_error(files.status("no-such-id", 0).await, 404, "invalid_request", "unknown connection").await;
    let finish = app.browser().get(&app.url("/connect/finish?code=forged&state=nothing")).await;
    assert_eq!(finish.status(), 400, "a forged finish");
    let link = app.browser().get(&app.url("/connect/link/forged")).await;
    assert_eq!(link.status(), 400, "a forged link");
}

/// A server's webhook endpoint: keeps what it is sent, answers `status`.
async fn receiver(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hooks/tether",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| async move {
            let signature = headers.get("tether-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
            keep.lock().unwrap().push((signature, body));
            axum::http::StatusCode::from_u16(status).unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/tether", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_is_told_through_its_signed_webhook_and_retried_on_failure() {
    let (url, received) = receiver(200).await;
    let secret = "whsec-files-0123456789";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook"), secret).unwrap();
    let files = format!("connect_webhook = \"{url}\"\nconnect_webhook_secret_file = \"{}/hook\"", dir.path().display());
    let app = TestApp::spawn_with(Backend::Redis, Options { files, ..Options::default() }).await;
    let server = Server::files(&app);
    let started = server.connect("s-hook").await;
    walk(&app, &app.browser(), started["connect_url"].as_str().unwrap(), "fay", "approve").await;
    let denied = server.connect("s-hook-2").await;
    walk(&app, &app.browser(), denied["connect_url"].as_str().unwrap(), "fay", "deny").await;

    let deadline = Instant::now() + Duration::from_secs(5);
    while received.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the webhooks did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = tether::clock::Clock::now(&tether::clock::SystemClock);
    let events: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(signature, body)| {
            let signature = signature.as_deref().expect("signed");
            assert!(tether::webhook::verify(secret, signature, body.as_bytes(), now, 300), "signature of {body}");
            assert!(!tether::webhook::verify("another-secret-1234", signature, body.as_bytes(), now, 300));
            assert!(!tether::webhook::verify(secret, signature, body.replace("s-hook", "s-evil").as_bytes(), now, 300));
            serde_json::from_str(body).unwrap()
        })
        .collect();
    let kinds: Vec<(&str, &str)> =
        events.iter().map(|e| (e["type"].as_str().unwrap(), e["session"].as_str().unwrap())).collect();
    assert!(kinds.contains(&("connection.connected", "s-hook")), "{kinds:?}");
    assert!(kinds.contains(&("connection.denied", "s-hook-2")), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_webhook_is_retried() {
    let (url, received) = receiver(503).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook"), "whsec-files-0123456789").unwrap();
    let files = format!("connect_webhook = \"{url}\"\nconnect_webhook_secret_file = \"{}/hook\"", dir.path().display());
    let app = TestApp::spawn_with(Backend::Memory, Options { files, ..Options::default() }).await;
    let server = Server::files(&app);
    let started = server.connect("s-retry").await;
    walk(&app, &app.browser(), started["connect_url"].as_str().unwrap(), "gus", "approve").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "3 attempts expected, got {}", received.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = received.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3, "three attempts, then it gives up");
    assert!(attempts.windows(2).all(|w| w[0] == w[1]), "the same signed event each time");
}

#[test]
fn webhook_settings_are_checked() {
    let base = "[providers.dev]\nkind = \"oauth2\"\nclient_id = \"t\"\nauthorize_url = \"https://u/a\"\ntoken_url = \"https://u/t\"\n\
                [resources.files]\nuri = \"https://files.example/mcp\"\nprovider = \"dev\"\n";
    let errors = config_errors(&format!("{base}connect_webhook = \"ftp://x\"\n"));
    assert!(errors.contains("resources.files.connect_webhook: `ftp://x` is not an http(s) URL"), "{errors}");
    assert!(errors.contains("resources.files.connect_webhook_secret: missing"), "{errors}");
    let errors = config_errors(&format!("{base}connect_webhook_secret_file = \"/nonexistent\"\n"));
    assert!(errors.contains("resources.files.connect_webhook_secret_file: cannot read"), "{errors}");
    let errors = config_errors(&format!("{base}connect_webhook_secret = \"inline-secret-123456\"\n"));
    assert!(errors.contains("resources.files.connect_webhook_secret: secrets must not be written"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resolve_refreshes_the_upstream_token_and_disconnect_revokes_it_upstream() {
    let options = Options { upstream_ttl: Some(Duration::from_secs(120)), revoke_upstream: true, ..Options::default() };
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let files = Server::files(&app);
    let started = files.connect("s-fresh").await;
    walk(&app, &app.browser(), started["connect_url"].as_str().unwrap(), "hal", "approve").await;
    let first = files.resolve("s-fresh").await;
    let calls = app.upstream.token_calls();

    // Within the refresh skew of the upstream token's expiry: resolve refreshes it.
    app.clock.advance(61);
    let second = files.resolve("s-fresh").await;
    assert_eq!(second["connected"], true);
    assert_ne!(second["upstream"]["access_token"], first["upstream"]["access_token"], "refreshed");
    assert_eq!(app.upstream.token_calls(), calls + 1, "one upstream refresh");
    let token = second["upstream"]["access_token"].as_str().unwrap();
    assert!(app.upstream.accepts(token));

    assert_eq!(files.disconnect("s-fresh").await["disconnected"], true);
    assert_eq!(app.upstream.counts().revocations, 1, "revoked upstream");
    assert!(!app.upstream.accepts(token), "the upstream token no longer works");
}
