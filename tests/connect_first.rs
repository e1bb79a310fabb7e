//! "Connect first": when the provider stops honouring a connection, the MCP client's token stays
//! good, MCP servers are told so with a link, and the person who opens it and signs in as the
//! same account makes every grant on the connection work again. Real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::Duration;

use common::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

fn options() -> Options {
    Options { upstream_ttl: Some(Duration::from_secs(120)), ..Options::default() }
}

/// The link introspection hands out for `access`, after checking the answer's shape.
async fn connect_first(app: &TestApp, access: &str) -> String {
    let answer = app.introspect(access).await;
    assert_eq!(answer["active"], true, "the token stays good: {answer}");
    assert!(answer.get("upstream").is_none(), "no credential to hand out: {answer}");
    assert_eq!(answer["upstream_error"], "interaction_required");
    let uri = answer["interaction_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with(&format!("{}/reconnect/", app.base)), "{uri}");
    uri
}

/// Opens `link` in `browser` and signs in upstream as `user`; returns Tether's answer to the
/// callback.
async fn open_and_sign_in(app: &TestApp, browser: &Browser, link: &str, user: &str) -> reqwest::Response {
    let to_upstream = browser.get(link).await;
    assert_eq!(to_upstream.status(), 302, "the link sends the browser to the provider");
    let upstream = location(&to_upstream);
    assert!(upstream.starts_with(&app.upstream.base_url), "{upstream}");
    let back = browser.upstream_login(&upstream, user, "approve").await;
    browser.get(&location(&back)).await
}

#[tokio::test]
async fn a_refused_refresh_asks_for_the_person_and_their_link_restores_the_grant() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "pat").await;
    let access = tokens["access_token"].as_str().unwrap();

    app.upstream.revoke_all_refresh_tokens(); // the person removed the app at the provider
    app.clock.advance(61);
    let link = connect_first(&app, access).await;
    assert_eq!(connect_first(&app, access).await, link, "the same link, and no second refresh");
    assert_eq!(app.upstream.counts().refreshes, 1);
    // Token exchange says the same, RFC 8693-style.
    let response = app
        .api
        .post(app.url("/token"))
        .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
        .form(&[("grant_type", GRANT), ("subject_token", access), ("subject_token_type", ACCESS)])
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 400, "interaction_required", "exchange").await;
    assert_eq!(body["interaction_uri"], link.as_str());

    // Someone else who gets hold of the link cannot attach their account to pat's grants.
    let answer = open_and_sign_in(&app, &app.browser(), &link, "mallory").await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("another account"));
    connect_first(&app, access).await;

    // pat opens it: connected again, the page shows it, the same token works.
    let browser = app.browser();
    let answer = open_and_sign_in(&app, &browser, &link, "pat").await;
    assert_eq!(answer.status(), 302);
    assert_eq!(location(&answer), format!("{}/account", app.base));
    let page = browser.get(&app.url("/account")).await.text().await.unwrap();
    assert!(page.contains("You connected your Dev Upstream account again."), "activity shows it");
    let answer = app.introspect(access).await;
    let upstream = answer["upstream"]["access_token"].as_str().unwrap();
    assert!(app.upstream.accepts(upstream), "{answer}");
    assert!(answer.get("upstream_error").is_none());
    // The client never had to authorize again: its refresh token works.
    assert_eq!(app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    // The link, opened again, just shows the person their connections.
    let again = app.browser().get(&link).await;
    assert_eq!((again.status().as_u16(), location(&again)), (302, format!("{}/account", app.base)));
}

#[tokio::test]
async fn a_link_completes_once_and_only_as_issued() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "quinn").await["access_token"].as_str().unwrap().to_owned();
    app.upstream.revoke_all_refresh_tokens();
    app.clock.advance(61);
    let link = connect_first(&app, &access).await;

    // Two browsers start; the first to finish wins, the second is told the link was used.
    let (first, second) = (app.browser(), app.browser());
    let up1 = location(&first.get(&link).await);
    let up2 = location(&second.get(&link).await);
    let back1 = first.upstream_login(&up1, "quinn", "approve").await;
    let back2 = second.upstream_login(&up2, "quinn", "approve").await;
    assert_eq!(first.get(&location(&back1)).await.status(), 302);
    let late = second.get(&location(&back2)).await;
    assert_eq!(late.status(), 400);
    assert!(late.text().await.unwrap().contains("already used"));

    // Altered or expired links are refused with a page, not followed.
    let token = link.rsplit('/').next().unwrap();
    let altered = format!("{}/reconnect/{}", app.base, token.replacen('.', "0.", 1));
    let response = app.browser().get(&altered).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("not valid or has expired"));
    app.clock.advance(1300);
    assert_eq!(app.browser().get(&link).await.status(), 400, "expired");
}

#[tokio::test]
async fn the_server_module_reports_connect_first() {
    use std::sync::Arc;
    use tether::resource_server::{ExchangeStatus, IntrospectionClient, IntrospectionConfig, TokenStatus};
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "rio").await["access_token"].as_str().unwrap().to_owned();
    let server = IntrospectionClient::with_clock(
        IntrospectionConfig::new(app.url("/introspect"), RESOURCE_ID, RESOURCE_SECRET),
        Arc::new(app.clock.clone()),
    )
    .unwrap();
    // A refused upstream call reported: the cached answer goes, the token is refreshed.
    let TokenStatus::Active(first) = server.introspect(&access).await.unwrap() else { panic!("inactive") };
    let TokenStatus::Active(fresh) = server.report_rejected(&access).await.unwrap() else { panic!("inactive") };
    use secrecy::ExposeSecret;
    assert_ne!(fresh.upstream.access_token.expose_secret(), first.upstream.access_token.expose_secret());
    let TokenStatus::Active(next) = server.introspect(&access).await.unwrap() else { panic!("inactive") };
    assert_eq!(
        next.upstream.access_token.expose_secret(),
        fresh.upstream.access_token.expose_secret(),
        "not the stale cache"
    );

    app.upstream.revoke_all_refresh_tokens();
    app.clock.advance(61);
    let TokenStatus::ConnectFirst(needs) = server.introspect(&access).await.unwrap() else {
        panic!("not connect-first")
    };
    assert!(needs.interaction_uri.contains("/reconnect/"));
    assert_eq!(needs.client_id, client.client_id);
    let ExchangeStatus::ConnectFirst { interaction_uri } = server.exchange(&access).await.unwrap() else {
        panic!("not connect-first")
    };
    assert_eq!(interaction_uri, needs.interaction_uri);
}

/// `POST /introspect/upstream-rejected` as `id`.
async fn report(app: &TestApp, id: &str, secret: &str, token: &str) -> reqwest::Response {
    let url = app.url("/introspect/upstream-rejected");
    app.api.post(url).basic_auth(id, Some(secret)).form(&[("token", token)]).send().await.unwrap()
}

#[tokio::test]
async fn a_servers_report_ends_a_token_that_never_expires_only_when_the_provider_confirms() {
    let options = Options { kind: Kind::GitHubOAuthApp, ..Options::default() };
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "gus").await["access_token"].as_str().unwrap().to_owned();
    let before = app.introspect(&access).await["upstream"]["access_token"].clone();

    // A confused server, or one lying about someone else's token, changes nothing: the provider
    // still takes the token, and another server's report is about a token it does not have.
    let answer: serde_json::Value = report(&app, RESOURCE_ID, RESOURCE_SECRET, &access).await.json().await.unwrap();
    assert_eq!(answer["upstream"]["access_token"], before, "still accepted: {answer}");
    let answer: serde_json::Value =
        report(&app, OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, &access).await.json().await.unwrap();
    assert_eq!(answer, serde_json::json!({"active": false}));
    assert_eq!(app.introspect(&access).await["upstream"]["access_token"], before);

    // The person removed the app at GitHub: the provider confirms, the person is asked.
    app.upstream.revoke_access_tokens();
    let answer: serde_json::Value = report(&app, RESOURCE_ID, RESOURCE_SECRET, &access).await.json().await.unwrap();
    assert_eq!(answer["upstream_error"], "interaction_required", "{answer}");
    let link = connect_first(&app, &access).await;
    // Connecting again makes the same MCP token work, with a new upstream token.
    let answer = open_and_sign_in(&app, &app.browser(), &link, "gus").await;
    assert_eq!(answer.status(), 302);
    let after = app.introspect(&access).await;
    assert!(app.upstream.accepts(after["upstream"]["access_token"].as_str().unwrap()), "{after}");
}

#[tokio::test]
async fn a_report_about_a_refreshable_token_refreshes_it_and_reports_are_limited() {
    let options = Options { extra: "[limits]\nupstream_rejected_per_minute = 2".into(), ..options() };
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "hal").await["access_token"].as_str().unwrap().to_owned();
    let before = app.introspect(&access).await["upstream"]["access_token"].as_str().unwrap().to_owned();
    let answer: serde_json::Value = report(&app, RESOURCE_ID, RESOURCE_SECRET, &access).await.json().await.unwrap();
    let after = answer["upstream"]["access_token"].as_str().unwrap();
    assert_ne!(after, before, "refreshed although not near expiry");
    assert!(app.upstream.accepts(after));
    assert_eq!(app.upstream.counts().refreshes, 1);
    assert_eq!(report(&app, RESOURCE_ID, RESOURCE_SECRET, &access).await.status(), 200);
    let limited = report(&app, RESOURCE_ID, RESOURCE_SECRET, &access).await;
    assert_eq!(limited.status(), 429, "two a minute");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(report(&app, RESOURCE_ID, "wrong", &access).await.status(), 401);
}

#[tokio::test]
async fn under_a_login_provider_only_the_signed_in_owner_restores_the_connection() {
    let mut options = Options { kind: Kind::Oidc, single_resource: true, ..options() };
    options.extra.push_str("[login]\nprovider = \"idp\"\n");
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let browser = app.browser();
    let to_login = location(&browser.get(&app.url("/account/sign-in?provider=idp")).await);
    let back = browser.upstream_login(&to_login, "alice", "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let next = app.go_upstream(&browser, &app.authorize_url(&client, &pkce, &[])).await;
    let back = browser.upstream_login(&next, "alice-work", "approve").await;
    let done = location(&browser.get(&location(&back)).await);
    let tokens: serde_json::Value =
        app.exchange_code(&client, &query(&done)["code"], &pkce.verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();

    app.upstream.revoke_all_refresh_tokens();
    app.clock.advance(61);
    let link = connect_first(&app, access).await;
    // Someone without alice's Tether session cannot even start.
    let stranger = app.browser().get(&link).await;
    assert_eq!(stranger.status(), 403);
    assert!(stranger.text().await.unwrap().contains("Sign in to Tether first"));
    // Alice, signed in, connects the same upstream account again.
    let answer = open_and_sign_in(&app, &browser, &link, "alice-work").await;
    assert_eq!(location(&answer), app.url("/account"));
    let after = app.introspect(access).await;
    assert!(app.upstream.accepts(after["upstream"]["access_token"].as_str().unwrap()), "{after}");
}
