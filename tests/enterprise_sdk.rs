//! Enterprise-managed authorization end to end with the official MCP Python SDK 2.x
//! (`IdentityAssertionOAuthProvider`): the company's identity provider signs an ID-JAG, the SDK
//! trades it at Tether for a token and calls a tool of the example MCP server, which gets the
//! person's upstream credential. Needs the SDK: `make e2e` installs it in tests/e2e/.venv-py and
//! runs this test with `--ignored` (TETHER_E2E_PYTHON names the interpreter).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;
#[path = "../examples/support/mcp_server.rs"]
mod mcp_server;

use common::tls_server::{DocumentServer, Route};
use common::*;
use serde_json::json;

#[tokio::test]
#[ignore = "needs the MCP Python SDK: make e2e"]
async fn the_python_sdk_trades_an_id_jag_for_a_token_and_calls_a_tool() {
    let python = std::env::var("TETHER_E2E_PYTHON").expect("TETHER_E2E_PYTHON: the interpreter with mcp installed");
    let idp_keys = DocumentServer::start().await;
    let idp = Oidc::new(jsonwebtoken::Algorithm::ES256);
    idp_keys.route("/jwks", Route::json(&idp.jwks(), "max-age=300"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("ca.pem"), &idp_keys.ca_pem).unwrap();
    std::fs::write(dir.path().join("agent"), "agent-secret-0123456789").unwrap();
    std::fs::write(dir.path().join("agents-mcp"), "agents-mcp-secret-0123").unwrap();
    // The MCP server's real address is its resource URI: the SDK derives `resource` from it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mcp_addr = listener.local_addr().unwrap();
    drop(listener);
    let mcp_url = format!("http://{mcp_addr}/mcp");
    let extra = format!(
        r#"[login]
provider = "idp"
[client_metadata]
allow_networks = ["127.0.0.1/32"]
ca_file = "{d}/ca.pem"
[resources.agents]
uri = "{mcp_url}"
name = "Agents MCP"
provider = "idp"
secret_file = "{d}/agents-mcp"
[[resources.agents.scopes]]
name = "files:read"
upstream = ["repo:read"]
default = true
[enterprise.corp]
issuer = "{{upstream}}"
jwks_url = "{jwks}"
resources = ["agents"]
clients = ["agent"]
[clients.agent]
name = "Company agent"
redirect_uris = ["{CLIENT_REDIRECT}"]
client_secret_file = "{d}/agent"
"#,
        jwks = idp_keys.url("/jwks"),
    );
    let app = TestApp::spawn_with(Backend::Redis, Options { kind: Kind::Oidc, extra, ..Options::default() }).await;
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
        "client_id": "agent", "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300,
        "resource": mcp_url, "scope": "files:read",
    });
    let assertion = idp.sign("oauth-id-jag+jwt", &claims, false);
    let run = tokio::process::Command::new(&python)
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/id_jag.py"), &mcp_url, &app.base, "agent"])
        .args(["agent-secret-0123456789", assertion.as_str()])
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("the SDK hung").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("You are ivy"), "whoami with ivy's upstream credential: {stdout}");
}
