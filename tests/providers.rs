//! Every provider kind through the core flow against a stand-in speaking it, and what is
//! specific to each: ID tokens and their keys (OIDC, Google), offline access (Google),
//! expiring tokens (GitHub Apps), discovery outages, configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn app(kind: Kind) -> TestApp {
    TestApp::spawn_with(Backend::Memory, Options { kind, ..Options::default() }).await
}

#[tokio::test]
async fn oauth2_completes_the_core_flow() {
    core_flow(&app(Kind::OAuth2).await, "ann").await;
}

#[tokio::test]
async fn github_app_completes_the_core_flow() {
    core_flow(&app(Kind::GitHubApp).await, "ben").await;
}

#[tokio::test]
async fn github_oauth_app_completes_the_core_flow() {
    core_flow(&app(Kind::GitHubOAuthApp).await, "cal").await;
}

#[tokio::test]
async fn oidc_completes_the_core_flow() {
    core_flow(&app(Kind::Oidc).await, "dee").await;
}

#[tokio::test]
async fn google_completes_the_core_flow_on_redis() {
    core_flow(&TestApp::spawn_with(Backend::Redis, Options { kind: Kind::Google, ..Options::default() }).await, "eve")
        .await;
}

/// The upstream authorization request Tether sends for one authorization.
async fn upstream_request(app: &TestApp) -> std::collections::HashMap<String, String> {
    let client = app.register_client("none").await;
    query(&app.go_upstream(&app.browser(), &app.authorize_url(&client, &Pkce::new(), &[])).await)
}

#[tokio::test]
async fn each_kind_asks_upstream_for_what_it_needs() {
    let google = upstream_request(&app(Kind::Google).await).await;
    for (param, value) in [("access_type", "offline"), ("prompt", "consent"), ("include_granted_scopes", "true")] {
        assert_eq!(google.get(param).map(String::as_str), Some(value), "google {param}");
    }
    assert!(google["scope"].split(' ').any(|s| s == "openid"));
    assert_eq!(google["nonce"].len(), 43, "OpenID requests carry a nonce");
    let oidc = upstream_request(&app(Kind::Oidc).await).await;
    assert!(oidc["scope"].starts_with("openid ") && oidc.contains_key("nonce"));
    let github = upstream_request(&app(Kind::GitHubApp).await).await;
    assert!(!github.contains_key("nonce") && !github.contains_key("access_type"));
}

#[tokio::test]
async fn github_app_tokens_record_when_their_refresh_token_expires() {
    let app = app(Kind::GitHubApp).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "fay").await["access_token"].as_str().unwrap().to_owned();
    let upstream = app.introspect(&access).await["upstream"].clone();
    let expires_at = upstream["expires_at"].as_i64().unwrap();
    assert_eq!(expires_at - app.clock.now_secs(), 28_800, "GitHub App user tokens last 8 hours");
}

/// Runs a browser flow and returns the client redirect's query (a code, or an error).
async fn attempt(app: &TestApp, user: &str) -> std::collections::HashMap<String, String> {
    let client = app.register_client("none").await;
    let browser = app.browser();
    let upstream = app.go_upstream(&browser, &app.authorize_url(&client, &Pkce::new(), &[])).await;
    let back = browser.upstream_login(&upstream, user, "approve").await;
    let to_client = browser.get(&location(&back)).await;
    assert_eq!(to_client.status(), 302);
    query(&location(&to_client))
}

#[tokio::test]
async fn id_tokens_that_fail_any_check_end_the_sign_in() {
    let app = app(Kind::Oidc).await;
    assert!(attempt(&app, "gus").await.contains_key("code"), "a correct ID token passes");
    for fault in [
        IdTokenFault::WrongAudience,
        IdTokenFault::WrongIssuer,
        IdTokenFault::Expired,
        IdTokenFault::WrongNonce,
        IdTokenFault::BadSignature,
        IdTokenFault::UnknownKid,
    ] {
        app.upstream.id_token_fault(Some(fault));
        let answer = attempt(&app, "gus").await;
        assert_eq!(answer.get("error").map(String::as_str), Some("server_error"), "{fault:?}: {answer:?}");
        assert!(!answer.contains_key("code"), "{fault:?} produced a code");
    }
}

#[tokio::test]
async fn an_unknown_key_id_causes_one_jwks_refetch_not_one_per_request() {
    let app = app(Kind::Oidc).await;
    assert!(attempt(&app, "hal").await.contains_key("code"));
    assert_eq!(app.upstream.counts().jwks_fetches, 1, "keys fetched once, then cached");
    app.upstream.id_token_fault(Some(IdTokenFault::UnknownKid));
    for _ in 0..3 {
        assert_eq!(attempt(&app, "hal").await["error"], "server_error");
    }
    assert_eq!(app.upstream.counts().jwks_fetches, 2, "one refetch for the unknown kid, then none for 30 s");
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_with_one_refetch() {
    let app = app(Kind::Google).await;
    assert!(attempt(&app, "ida").await.contains_key("code"));
    app.upstream.rotate_signing_key();
    for _ in 0..3 {
        assert!(attempt(&app, "ida").await.contains_key("code"), "signed with the new key");
    }
    assert_eq!(app.upstream.counts().jwks_fetches, 2);
}

#[tokio::test]
async fn a_provider_whose_discovery_is_down_is_unavailable_until_it_recovers() {
    let app =
        TestApp::spawn_with(Backend::Memory, Options { kind: Kind::Oidc, discovery_down: true, ..Options::default() })
            .await;
    assert_eq!(
        app.get_json("/.well-known/oauth-authorization-server").await["issuer"],
        app.issuer.as_str(),
        "Tether started anyway"
    );
    let client = app.register_client("none").await;
    let browser = app.browser();
    let page = browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.text().await.unwrap();
    let answer = browser.consent(&app.url("/consent"), &consent_id(&page), "approve").await;
    assert_eq!(query(&location(&answer))["error"], "temporarily_unavailable");

    app.upstream.fail_discovery(false);
    tokio::time::sleep(Duration::from_millis(5_200)).await; // past the retry pause
    assert!(attempt(&app, "jon").await.contains_key("code"), "discovery retried and succeeded");
}

#[tokio::test]
async fn configuration_errors_name_the_kind_specific_key() {
    let errors = config_errors("[providers.corp]\nkind = \"oidc\"\nclient_id = \"t\"\n");
    assert!(errors.contains("providers.corp.issuer: required for kind = \"oidc\""), "{errors}");
    let errors = config_errors("[providers.g]\nkind = \"google\"\nclient_id = \"t\"\n");
    assert!(errors.contains("providers.g.client_secret: missing"), "{errors}");
    let errors = config_errors(
        "[providers.g]\nkind = \"github\"\nclient_id = \"t\"\nissuer = \"https://x\"\ntoken_url = \"https://x/t\"\n",
    );
    assert!(errors.contains("providers.g.issuer: does not apply to kind = \"github\""), "{errors}");
    assert!(errors.contains("providers.g.token_url: does not apply"), "{errors}");
    let errors =
        config_errors("[providers.o]\nkind = \"oidc\"\nclient_id = \"t\"\nissuer = \"http://idp.example.com\"\n");
    assert!(errors.contains("providers.o.issuer: `http://idp.example.com` must be an https URL"), "{errors}");
    let errors = config_errors(
        "[upstream]\nrefresh_lock_ms = 5000\n[providers.o]\nkind = \"oidc\"\nclient_id = \"t\"\nissuer = \"https://idp.example.com\"\ntimeout_secs = 10\n",
    );
    assert!(errors.contains("upstream.refresh_lock_ms: must exceed the slowest provider timeout"), "{errors}");
}

#[tokio::test]
async fn revoking_a_grant_revokes_it_upstream_for_every_kind_that_can() {
    for kind in [Kind::OAuth2, Kind::GitHubApp, Kind::Oidc, Kind::Google] {
        let app =
            TestApp::spawn_with(Backend::Memory, Options { kind, revoke_upstream: true, ..Options::default() }).await;
        let client = app.register_client("none").await;
        let tokens = app.tokens_for(&client, "kim").await;
        let upstream: Value = app.introspect(tokens["access_token"].as_str().unwrap()).await["upstream"].clone();
        let upstream_token = upstream["access_token"].as_str().unwrap();
        assert!(app.upstream.accepts(upstream_token), "{kind:?}");
        assert_eq!(app.revoke(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
        assert_eq!(app.upstream.counts().revocations, 1, "{kind:?}: one upstream revocation");
        assert!(!app.upstream.accepts(upstream_token), "{kind:?}: the upstream token still works");
    }
}

/// Authorizes `client` in `browser` as `user` for `scope`; returns the token scope and the
/// upstream scopes Tether asked for.
async fn authorize_for(
    app: &TestApp,
    browser: &Browser,
    client: &TestClient,
    user: &str,
    scope: &str,
) -> (String, String) {
    let pkce = Pkce::new();
    let url = app.authorize_url(client, &pkce, &[("scope", Some(scope))]);
    let next = app.go_upstream(browser, &url).await;
    // Signed in with a connection that covers it: straight back to the client.
    let (upstream_scope, result) = if next.starts_with(&client.redirect_uri) {
        (String::new(), query(&next))
    } else {
        let back = browser.upstream_login(&next, user, "approve").await;
        (query(&next)["scope"].clone(), query(&location(&browser.get(&location(&back)).await)))
    };
    let tokens: Value = app.exchange_code(client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    (tokens["scope"].as_str().unwrap().to_owned(), upstream_scope)
}

#[tokio::test]
async fn step_up_widens_the_grant_for_the_same_user_in_the_same_browser() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let browser = app.browser();
    let (scope, upstream) = authorize_for(&app, &browser, &client, "tia", "files:read").await;
    assert_eq!((scope.as_str(), upstream.as_str()), ("files:read", "user repo:read"));

    // A client that asks only for the missing scope (as older SDK clients do after a 403)
    // gets the union, and the user is asked upstream for the union.
    let page = browser
        .get(&app.authorize_url(&client, &Pkce::new(), &[("scope", Some("files:write"))]))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("including what you approved for it before"), "{page}");
    let (scope, upstream) = authorize_for(&app, &browser, &client, "tia", "files:write").await;
    assert_eq!(scope, "files:read files:write");
    assert_eq!(upstream, "user repo:read repo:write");

    // Asking for less later does not narrow it (and, signed in with a connection that has
    // the scopes, needs no upstream sign-in).
    let logins = app.upstream.counts().logins;
    let (scope, upstream) = authorize_for(&app, &browser, &client, "tia", "files:read").await;
    assert_eq!((scope.as_str(), upstream.as_str()), ("files:read files:write", ""));
    assert_eq!(app.upstream.counts().logins, logins, "no second upstream sign-in");
}

#[tokio::test]
async fn step_up_does_not_widen_for_another_user_or_another_browser() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let browser = app.browser();
    authorize_for(&app, &browser, &client, "uli", "files:read files:write").await;
    // Same browser, someone else signs in upstream once uli's Tether session is over: only
    // what was asked.
    app.clock.advance(3601);
    let (scope, _) = authorize_for(&app, &browser, &client, "val", "files:read").await;
    assert_eq!(scope, "files:read");
    // Another browser knows nothing of the earlier grants.
    let (scope, upstream) = authorize_for(&app, &app.browser(), &client, "uli", "files:write").await;
    assert_eq!((scope.as_str(), upstream.as_str()), ("files:write", "user repo:write"));
}

#[tokio::test]
async fn without_an_id_token_an_openid_provider_identifies_the_user_by_userinfo() {
    let app = app(Kind::Oidc).await;
    app.upstream.omit_id_token(true);
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "wyn").await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&access).await["sub"], app.upstream.user_id("wyn").to_string().as_str());
}
