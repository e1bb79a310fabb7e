//! The enterprise demo (`make run-enterprise`: config/enterprise-demo.toml and the development
//! upstream as the company identity provider) walked as the README walks it, on free ports: the
//! agent gets the person's ID token and an ID-JAG from the identity provider, trades the ID-JAG at
//! Tether without a browser, the MCP server is told to have the person connect first, the person
//! does, the same token then carries their credential, and the MCP server exchanges it for a
//! token addressed to the next MCP server in the chain. The `tether` binary, as shipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::dev_upstream::{DevUpstream, Profile, UpstreamConfig};
use common::process::spawn;
use common::redis::free_port;
use common::tls_server::{DocumentServer, Route};
use common::*;
use serde_json::Value;

const AGENT_REDIRECT: &str = "http://127.0.0.1:3000/callback";
const DEMO: (&str, &str) = ("demo", "demo-resource-secret");
const NOTES: (&str, &str) = ("notes", "notes-resource-secret");

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn the_enterprise_demo_walks_as_the_readme_says() {
    let port = free_port();
    let tether = format!("http://127.0.0.1:{port}");
    let idp = DevUpstream::start(UpstreamConfig {
        profile: Profile::Oidc,
        id_jag_client_id: Some("agent".into()),
        redirect_uris: vec![format!("{tether}/callback"), AGENT_REDIRECT.into()],
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    let keys = DocumentServer::start().await;
    keys.route("/jwks", Route::json(&idp.jwks().unwrap(), "max-age=300"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &keys.ca_pem).unwrap();
    // The demo's configuration, its fixed ports moved to this test's.
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/enterprise-demo.toml")).unwrap();
    let config = demo
        .replace("http://127.0.0.1:8090", &idp.base_url)
        .replace("https://127.0.0.1:8443/jwks", &keys.url("/jwks"))
        .replace("target/enterprise-demo/ca.pem", &ca.display().to_string());
    assert!(!config.contains(":8090") && !config.contains(":8443") && config.contains(&ca.display().to_string()));
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, config).unwrap();
    let env: Vec<(String, String)> = [
        ("TETHER__ISSUER", tether.as_str()),
        ("TETHER__RESOURCES__DEMO__SECRET", DEMO.1),
        ("TETHER__RESOURCES__NOTES__SECRET", NOTES.1),
        ("TETHER__CLIENTS__AGENT__CLIENT_SECRET", "agent-secret-0123456789"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let app = spawn(&path, port, &tether, dir.path().join("tether.log"), &env).await;
    let api = &app.api;
    let at_idp = |path: &str| format!("{}{path}", idp.base_url);

    // 1. The agent signs erin in at the identity provider and keeps her ID token.
    let pkce = Pkce::new();
    let back = api
        .post(at_idp("/authorize"))
        .form(&[
            ("response_type", "code"),
            ("client_id", "tether-dev"),
            ("redirect_uri", AGENT_REDIRECT),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", "erin"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    let code = query(&location(&back))["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", "tether-dev"),
        ("redirect_uri", AGENT_REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let signed_in = json(api.post(at_idp("/token")).form(&form).send().await.unwrap()).await;
    let id_token = signed_in["id_token"].as_str().unwrap();
    // 2. ... and trades it there for an ID-JAG for Tether and the demo MCP server.
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("client_id", "tether-dev"),
        ("requested_token_type", "urn:ietf:params:oauth:token-type:id-jag"),
        ("subject_token", id_token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
        ("audience", tether.as_str()),
        ("resource", "http://127.0.0.1:9000/mcp"),
        ("scope", "files:read"),
    ];
    let jag = json(api.post(at_idp("/token")).form(&form).send().await.unwrap()).await;
    assert_eq!(jag["issued_token_type"], "urn:ietf:params:oauth:token-type:id-jag");
    // 3. Tether takes it: a token for the demo MCP server, without a browser.
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", jag["access_token"].as_str().unwrap()),
    ];
    let request = api.post(app.url("/token")).basic_auth("agent", Some("agent-secret-0123456789")).form(&form);
    let tokens = json(request.send().await.unwrap()).await;
    let access = tokens["access_token"].as_str().unwrap();
    // 4. erin never connected the provider: connect first.
    let introspect = |(id, secret): (&str, &str), token: &str| {
        api.post(app.url("/introspect")).basic_auth(id, Some(secret)).form(&[("token", token)]).send()
    };
    let answer = json(introspect(DEMO, access).await.unwrap()).await;
    assert_eq!(answer["upstream_error"], "interaction_required", "{answer}");
    assert_eq!(answer["sub"], format!("corp:{}", idp.user_id("erin")));
    // 5. erin signs in to Tether, opens the link and connects her account.
    let browser = Browser::new();
    let to_idp = location(&browser.get(&app.url("/account/sign-in?provider=corp")).await);
    let back = browser.upstream_login(&to_idp, "erin", "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));
    let to_idp = location(&browser.get(answer["interaction_uri"].as_str().unwrap()).await);
    let back = browser.upstream_login(&to_idp, "erin", "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));
    // 6. The same token now carries her credential.
    let answer = json(introspect(DEMO, access).await.unwrap()).await;
    let credential = answer["upstream"]["access_token"].as_str().unwrap();
    assert!(idp.accepts(credential), "{answer}");
    // 7. The demo server exchanges it for a token addressed to notes, which sees who acts.
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", access),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("audience", "notes"),
    ];
    let request = api.post(app.url("/token")).basic_auth(DEMO.0, Some(DEMO.1)).form(&form);
    let chained = json(request.send().await.unwrap()).await;
    let answer = json(introspect(NOTES, chained["access_token"].as_str().unwrap()).await.unwrap()).await;
    assert_eq!(answer["act"]["sub"], "http://127.0.0.1:9000/mcp", "{answer}");
    assert_eq!(answer["upstream"]["access_token"], credential);
    // The identity provider's ID-JAGs are only for ID tokens it issued.
    let forged = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("client_id", "tether-dev"),
        ("requested_token_type", "urn:ietf:params:oauth:token-type:id-jag"),
        ("subject_token", "not-an-id-token"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
        ("audience", tether.as_str()),
        ("resource", "http://127.0.0.1:9000/mcp"),
    ];
    assert_eq!(api.post(at_idp("/token")).form(&forged).send().await.unwrap().status(), 400);
}
