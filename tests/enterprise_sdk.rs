//! Enterprise-managed authorization end to end with the official MCP Python SDK 2.x
//! (`IdentityAssertionOAuthProvider`): the company's identity provider signs an ID-JAG, the SDK
//! trades it at Tether for a token and calls a tool of the example MCP server, which gets the
//! person's upstream credential. The pinned SDK lives in tests/e2e/.venv-py (`make test` installs
//! it; TETHER_E2E_PYTHON names another interpreter): without it the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;
#[path = "../examples/support/mcp_server.rs"]
mod mcp_server;

use common::enterprise::{CLIENT, CLIENT_SECRET, EnterpriseIdp};
use common::*;
use serde_json::json;

/// The interpreter with the pinned SDK.
fn python() -> String {
    let python = std::env::var("TETHER_E2E_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/.venv-py/bin/python").to_owned());
    assert!(
        std::path::Path::new(&python).exists(),
        "the MCP Python SDK is not installed at {python}: run `make python-sdk` (make test does)"
    );
    python
}

#[tokio::test]
async fn the_python_sdk_trades_an_id_jag_for_a_token_and_calls_a_tool() {
    let python = python();
    let ent = EnterpriseIdp::start().await;
    let d = ent.dir.path().display();
    std::fs::write(ent.dir.path().join("agents-mcp"), "agents-mcp-secret-0123").unwrap();
    // The MCP server's real address is its resource URI: the SDK derives `resource` from it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mcp_addr = listener.local_addr().unwrap();
    drop(listener);
    let mcp_url = format!("http://{mcp_addr}/mcp");
    let server = format!(
        r#"[resources.agents]
uri = "{mcp_url}"
name = "Agents MCP"
provider = "idp"
secret_file = "{d}/agents-mcp"
[[resources.agents.scopes]]
name = "files:read"
upstream = ["repo:read"]
default = true
"#
    );
    let app = TestApp::spawn_with(Backend::Redis, ent.options(&["agents"], &server)).await;
    let _server = mcp_server::start(mcp_server::McpServerConfig {
        bind: mcp_addr,
        resource: mcp_url.clone(),
        issuer: app.base.clone(),
        resource_id: "agents".into(),
        secret: "agents-mcp-secret-0123".into(),
        upstream_user_url: format!("{}/userinfo", app.upstream.base_url),
        session_path: "/session-mcp".into(),
        webhook_secret: None,
    })
    .await
    .unwrap();

    // The person signed in to Tether once and connected their account (any MCP client).
    let browser = app.browser();
    let to_login = location(&browser.get(&app.url("/account/sign-in?provider=idp")).await);
    let back = browser.upstream_login(&to_login, "ivy", "approve").await;
    browser.get(&location(&back)).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let next = app.go_upstream(&browser, &app.authorize_url(&client, &pkce, &[("resource", Some(RESOURCE_URI))])).await;
    let back = browser.upstream_login(&next, "ivy", "approve").await;
    browser.get(&location(&back)).await;

    let now = app.clock.now_secs();
    let claims = json!({
        "iss": app.upstream.base_url, "sub": app.upstream.user_id("ivy").to_string(), "aud": app.base,
        "client_id": CLIENT, "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300,
        "resource": mcp_url, "scope": "files:read",
    });
    let assertion = ent.idp.sign("oauth-id-jag+jwt", &claims, false);
    let run = tokio::process::Command::new(&python)
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/id_jag.py"), &mcp_url, &app.base, CLIENT])
        .args([CLIENT_SECRET, assertion.as_str()])
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("the SDK hung").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("You are ivy"), "whoami with ivy's upstream credential: {stdout}");
}
