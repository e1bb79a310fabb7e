//! The example MCP server: what the MCP spec asks of a resource server (P-01..P-09, C-03).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

#[path = "../examples/support/mcp_server.rs"]
mod mcp_server;

use common::*;
use serde_json::{Value, json};

struct Mcp {
    url: String,
    http: reqwest::Client,
    _server: mcp_server::RunningServer,
}

const WEBHOOK_SECRET: &str = "example-webhook-secret-123";

async fn example_server(app: &TestApp) -> Mcp {
    let server = mcp_server::start(mcp_server::McpServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        resource: RESOURCE_URI.into(),
        issuer: app.base.clone(),
        resource_id: RESOURCE_ID.into(),
        secret: RESOURCE_SECRET.into(),
        upstream_user_url: format!("{}/user", app.upstream.base_url),
        session_path: "/session-mcp".into(),
        webhook_secret: Some(WEBHOOK_SECRET.into()),
    })
    .await
    .unwrap();
    Mcp { url: format!("http://{}", server.addr), http: reqwest::Client::new(), _server: server }
}

impl Mcp {
    async fn post(&self, token: Option<&str>, session: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/mcp", self.url))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().await.unwrap()
    }

    /// Initializes a session and returns its id.
    async fn session(&self, token: &str) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
        let response = self.post(Some(token), None, &init).await;
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        self.post(Some(token), Some(&session), &json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        session
    }

    /// Calls a tool; returns the HTTP response (the JSON-RPC result is in an SSE `data:` line).
    async fn call(&self, token: &str, session: &str, tool: &str, arguments: Value) -> reqwest::Response {
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        self.post(Some(token), Some(session), &call).await
    }
}

async fn sse_result(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {text}"));
    serde_json::from_str(data).unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers().get("www-authenticate").expect("a WWW-Authenticate challenge").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn p01_p02_p04_p09_protected_resource_metadata_names_tether_at_both_locations() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mcp = example_server(&app).await;
    let issuer = app.get_json("/.well-known/oauth-authorization-server").await["issuer"].clone();
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let doc: Value = mcp.http.get(format!("{}{path}", mcp.url)).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["resource"], RESOURCE_URI, "{path}: the exact canonical URI");
        assert_eq!(doc["authorization_servers"], json!([issuer]), "{path}: byte-identical issuer (D-02)");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert!(!doc["scopes_supported"].as_array().unwrap().contains(&json!("offline_access")), "P-09");
    }
}

#[tokio::test]
async fn p03_p06_p08_missing_invalid_expired_or_revoked_tokens_get_401_with_a_bearer_challenge() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mcp = example_server(&app).await;
    let metadata = "resource_metadata=\"https://files.example/.well-known/oauth-protected-resource/mcp\"";
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});

    let none = mcp.post(None, None, &ping).await;
    assert_eq!(none.status(), 401);
    let value = challenge(&none);
    assert!(value.starts_with("Bearer ") && value.contains(metadata) && !value.contains("error="), "{value}");

    let bad = mcp.post(Some("not-a-token"), None, &ping).await;
    assert_eq!(bad.status(), 401);
    assert!(challenge(&bad).starts_with("Bearer error=\"invalid_token\""), "{}", challenge(&bad));

    // P-08: a token in the query string is not a token.
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "vera").await;
    let access = tokens["access_token"].as_str().unwrap();
    let query = mcp.http.post(format!("{}/mcp?access_token={access}", mcp.url)).json(&ping).send().await.unwrap();
    assert_eq!(query.status(), 401);

    // P-06: revoked and expired tokens are 401 (so clients refresh), never 403 or 500.
    let session = mcp.session(access).await;
    assert_eq!(mcp.call(access, &session, "whoami", json!({})).await.status(), 200);
    let other = app.tokens_for(&client, "vera").await;
    let other_access = other["access_token"].as_str().unwrap();
    assert_eq!(app.revoke(&client, other_access).await.status(), 200);
    assert_eq!(mcp.post(Some(other_access), None, &ping).await.status(), 401);
    // Expired: a token the server has not seen (its introspection cache, on the wall clock,
    // keeps answers up to 30 s) is past its exp on Tether's clock.
    let unused = app.tokens_for(&client, "vera").await;
    app.clock.advance(606);
    let expired = mcp.post(Some(unused["access_token"].as_str().unwrap()), None, &ping).await;
    assert_eq!(expired.status(), 401);
    assert!(challenge(&expired).contains("invalid_token"));
}

#[tokio::test]
async fn p05_p07_tools_act_with_the_upstream_credential_and_missing_scopes_get_403() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mcp = example_server(&app).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "wes").await; // granted files:read only
    let access = tokens["access_token"].as_str().unwrap();
    let session = mcp.session(access).await;

    let whoami = sse_result(mcp.call(access, &session, "whoami", json!({})).await).await;
    let text = whoami["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("You are wes") && text.contains("at dev"), "{text}");

    let write = mcp.call(access, &session, "write_note", json!({"text": "hi"})).await;
    assert_eq!(write.status(), 403);
    let value = challenge(&write);
    assert!(value.starts_with("Bearer error=\"insufficient_scope\""), "{value}");
    assert!(value.contains("scope=\"files:read files:write\""), "granted plus needed scopes: {value}");
}

#[tokio::test]
async fn c03_cors_exposes_the_challenge_and_preflights_are_not_authenticated() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mcp = example_server(&app).await;
    let preflight = mcp
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/mcp", mcp.url))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, mcp-protocol-version, mcp-session-id")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
    for header in ["authorization", "mcp-protocol-version", "mcp-session-id", "last-event-id"] {
        assert!(allowed.contains(header), "{header} not allowed: {allowed}");
    }
    let unauthorized = mcp
        .http
        .post(format!("{}/mcp", mcp.url))
        .header("origin", "http://localhost:6274")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let exposed = unauthorized.headers()["access-control-expose-headers"].to_str().unwrap().to_owned();
    assert!(exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"), "{exposed}");
}

#[tokio::test]
async fn an_unreachable_tether_is_503_for_the_client_not_401() {
    let mut app = TestApp::spawn(Backend::Redis).await;
    let mcp = example_server(&app).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "xia").await["access_token"].as_str().unwrap().to_owned();
    app.redis.as_mut().unwrap().stop();
    let response = mcp.post(Some(&access), None, &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
    assert_eq!(response.status(), 503, "a client told 401 would throw its tokens away");
    assert!(response.headers().get("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_accepts_only_correctly_signed_webhooks() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mcp = example_server(&app).await;
    let body = r#"{"type":"connection.connected","id":"x","session":"nobody","resource":"files","at":1}"#;
    let post = |signature: String| {
        mcp.http
            .post(format!("{}/hooks/tether", mcp.url))
            .header("content-type", "application/json")
            .header("tether-signature", signature)
            .body(body)
            .send()
    };
    let now = tether::clock::Clock::now(&tether::clock::SystemClock);
    let good = tether::webhook::sign(WEBHOOK_SECRET, body.as_bytes(), now);
    assert_eq!(post(good).await.unwrap().status(), 204);
    let wrong_secret = tether::webhook::sign("not-the-secret-at-all", body.as_bytes(), now);
    assert_eq!(post(wrong_secret).await.unwrap().status(), 401);
    let stale = tether::webhook::sign(WEBHOOK_SECRET, body.as_bytes(), now - 3600);
    assert_eq!(post(stale).await.unwrap().status(), 401, "a replayed (old) event");
    assert_eq!(post(String::new()).await.unwrap().status(), 401, "unsigned");
}
