//! Failure paths of the browser steps: /authorize, /consent, /callback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;

#[tokio::test]
async fn a02_authorize_shows_a_page_and_never_redirects_when_client_or_redirect_is_bad() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let cases: Vec<(&str, String)> = vec![
        ("unknown client", app.authorize_url(&client, &pkce, &[("client_id", Some("no-such-client"))])),
        ("missing client_id", app.authorize_url(&client, &pkce, &[("client_id", None)])),
        (
            "unregistered redirect URI",
            app.authorize_url(&client, &pkce, &[("redirect_uri", Some("https://evil.example/cb"))]),
        ),
        (
            "redirect URI on another loopback path",
            app.authorize_url(&client, &pkce, &[("redirect_uri", Some("http://127.0.0.1:5555/other"))]),
        ),
        ("duplicate parameter", format!("{}&client_id=again", app.authorize_url(&client, &pkce, &[]))),
        ("malformed query", app.url("/authorize?client_id=%zz")),
    ];
    for (case, url) in cases {
        let response = app.browser().get(&url).await;
        assert_eq!(response.status(), 400, "{case}");
        assert!(response.headers().get("location").is_none(), "{case}: must not redirect");
        assert_eq!(response.headers()["x-frame-options"], "DENY", "{case}");
        assert!(response.text().await.unwrap().contains("Authorization failed"), "{case}");
    }
}

#[tokio::test]
async fn a01_a05_a09_authorize_sends_request_errors_back_to_the_client_with_state_and_iss() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    type Overrides = &'static [(&'static str, Option<&'static str>)];
    let cases: &[(&str, Overrides, &str)] = &[
        ("missing PKCE", &[("code_challenge", None), ("code_challenge_method", None)], "invalid_request"),
        ("plain PKCE", &[("code_challenge_method", Some("plain"))], "invalid_request"),
        ("PKCE method missing", &[("code_challenge_method", None)], "invalid_request"),
        ("unknown resource", &[("resource", Some("https://unknown.example/mcp"))], "invalid_target"),
        ("missing resource with several served", &[("resource", None)], "invalid_request"),
        ("token response type", &[("response_type", Some("token"))], "unsupported_response_type"),
        ("missing response type", &[("response_type", None)], "invalid_request"),
        ("scope of another resource only", &[("scope", Some("calendar:read"))], "invalid_scope"),
    ];
    for (case, overrides, error) in cases {
        let response = app.browser().get(&app.authorize_url(&client, &pkce, overrides)).await;
        assert_eq!(response.status(), 302, "{case}");
        let target = location(&response);
        assert!(target.starts_with(CLIENT_REDIRECT), "{case}: {target}");
        let q = query(&target);
        assert_eq!(q["error"], *error, "{case}");
        assert_eq!(q["state"], "client-state-123", "{case}");
        assert_eq!(q["iss"], app.base, "{case}");
        assert!(!q.contains_key("code"), "{case}");
    }
}

#[tokio::test]
async fn a02_r09_the_loopback_port_may_differ_from_the_registered_one() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await; // registered http://127.0.0.1/callback
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[("redirect_uri", Some("http://127.0.0.1:43123/callback"))]);
    let result = app.authorize(&app.browser(), &url, "erin").await;
    // The code is bound to the URI actually used, port included.
    let ok = app
        .token(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &result["code"]),
                ("redirect_uri", "http://127.0.0.1:43123/callback"),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a10_consent_is_single_use_bound_to_the_browser_and_can_be_denied() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[]);

    // Another browser (no binding cookie) cannot submit this browser's consent form.
    let victim = app.browser();
    let page = victim.get(&url).await.text().await.unwrap();
    let consent = consent_id(&page);
    let forged = app.browser().consent(&app.url("/consent"), &consent, "approve").await;
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("location").is_none());
    // The forged attempt consumed nothing the victim could use, and it cannot be replayed.
    let replay = victim.consent(&app.url("/consent"), &consent, "approve").await;
    assert_eq!(replay.status(), 400, "a consent id is single use");

    // An unknown consent id, and a malformed form.
    assert_eq!(victim.consent(&app.url("/consent"), "made-up", "approve").await.status(), 400);
    let bad = victim
        .client
        .post(app.url("/consent"))
        .body("%%%")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Deny goes back to the client as access_denied, with state and iss.
    let page = victim.get(&url).await.text().await.unwrap();
    let denied = victim.consent(&app.url("/consent"), &consent_id(&page), "deny").await;
    assert_eq!(denied.status(), 303);
    let q = query(&location(&denied));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "client-state-123");
    assert_eq!(q["iss"], app.base);
}

#[tokio::test]
async fn a10_a13_the_consent_page_escapes_what_clients_say_about_themselves() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response = app
        .register(&serde_json::json!({
            "client_name": "<script>alert(1)</script><b>Evil</b>",
            "redirect_uris": [CLIENT_REDIRECT],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    let body: serde_json::Value = response.json().await.unwrap();
    let client = TestClient {
        client_id: body["client_id"].as_str().unwrap().into(),
        client_secret: None,
        redirect_uri: CLIENT_REDIRECT.into(),
    };
    let response = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"), "client name must be escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        html.contains("Files") && html.contains("Dev Upstream") && html.contains("repo:read"),
        "names MCP server, provider and upstream scopes"
    );
}

#[tokio::test]
async fn callback_failures_end_in_a_page_or_a_client_redirect_never_a_500() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let url = app.authorize_url(&client, &Pkce::new(), &[]);

    // Unknown or missing state: nothing to redirect to.
    assert_eq!(app.browser().get(&app.url("/callback?code=x&state=unknown")).await.status(), 400);
    assert_eq!(app.browser().get(&app.url("/callback?code=x")).await.status(), 400);
    assert_eq!(app.browser().get(&app.url("/callback?state=a&state=b")).await.status(), 400, "repeated state");
    assert_eq!(app.browser().get(&app.url("/callback?%zz=%%")).await.status(), 400, "garbage query");

    // Start a flow up to the upstream redirect.
    async fn upstream_leg(app: &TestApp, url: &str) -> (Browser, String) {
        let browser = app.browser();
        let upstream = app.go_upstream(&browser, url).await;
        (browser, upstream)
    }

    // The user cancels at the provider: access_denied to the client.
    let (browser, upstream) = upstream_leg(&app, &url).await;
    let back = browser.upstream_login(&upstream, "frank", "deny").await;
    let to_client = browser.get(&location(&back)).await;
    assert_eq!(to_client.status(), 302);
    let q = query(&location(&to_client));
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("access_denied", "client-state-123"));
    assert_eq!(q["iss"], app.base);

    // The provider's token endpoint is down: temporarily_unavailable, not a 500.
    let (browser, upstream) = upstream_leg(&app, &url).await;
    let back = browser.upstream_login(&upstream, "frank", "approve").await;
    app.upstream.fail_token_endpoint(Some(503));
    let to_client = browser.get(&location(&back)).await;
    app.upstream.fail_token_endpoint(None);
    assert_eq!(to_client.status(), 302);
    assert_eq!(query(&location(&to_client))["error"], "temporarily_unavailable");

    // The callback arriving in another browser than the one that consented is refused.
    let (browser, upstream) = upstream_leg(&app, &url).await;
    let back = browser.upstream_login(&upstream, "frank", "approve").await;
    let hijack = app.browser().get(&location(&back)).await;
    assert_eq!(hijack.status(), 403);
    assert!(hijack.headers().get("location").is_none());

    // A state is single use: the legitimate browser cannot replay a completed callback.
    let (browser, upstream) = upstream_leg(&app, &url).await;
    let back = location(&browser.upstream_login(&upstream, "frank", "approve").await);
    assert_eq!(browser.get(&back).await.status(), 302);
    assert_eq!(browser.get(&back).await.status(), 400);
}

#[tokio::test]
async fn an_upstream_that_rejects_the_code_is_a_server_error_for_the_client() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let browser = app.browser();
    let upstream = app.go_upstream(&browser, &app.authorize_url(&client, &Pkce::new(), &[])).await;
    let back = location(&browser.upstream_login(&upstream, "gina", "approve").await);
    // Swap the upstream code for a bogus one: the provider answers invalid_grant.
    let mut url = url::Url::parse(&back).unwrap();
    let state = query(&back)["state"].clone();
    url.query_pairs_mut().clear().append_pair("code", "bogus").append_pair("state", &state);
    let to_client = browser.get(url.as_str()).await;
    assert_eq!(to_client.status(), 302);
    let q = query(&location(&to_client));
    assert_eq!(q["error"], "server_error");
    assert_eq!(q["state"], "client-state-123");
}
