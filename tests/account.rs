//! The account page on a real Redis, through HTTP as a browser drives it: a person sees one
//! card per client, removes one client's access (its tokens die, the other client's live on,
//! the upstream authorization both share is kept), disconnects the upstream account (revoked
//! upstream too), and signs out. Forms without the session's token, from another origin or
//! from another person's session do nothing. (The page in a real browser, with screenshots
//! and the accessibility check: tests/e2e/account.mjs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use serde_json::{Value, json};

async fn named_client(app: &TestApp, name: &str, redirect: &str) -> TestClient {
    let response = app
        .register(&json!({
            "client_name": name,
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    TestClient {
        client_id: body["client_id"].as_str().unwrap().to_owned(),
        client_secret: None,
        redirect_uri: redirect.to_owned(),
    }
}

/// Authorizes `client` in `browser` as `user` (upstream sign-in only when Tether asks) and
/// returns its tokens.
async fn tokens(app: &TestApp, browser: &Browser, client: &TestClient, user: &str) -> Value {
    let pkce = Pkce::new();
    let next = app.go_upstream(browser, &app.authorize_url(client, &pkce, &[("scope", None)])).await;
    let done = if next.starts_with(&client.redirect_uri) {
        next
    } else {
        let back = browser.upstream_login(&next, user, "approve").await;
        location(&browser.get(&location(&back)).await)
    };
    let response = app.exchange_code(client, &query(&done)["code"], &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn page(browser: &Browser, url: &str) -> (u16, String) {
    let response = browser.get(url).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post(browser: &Browser, url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = browser.client.post(url).form(form).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn active(app: &TestApp, token: &Value) -> bool {
    app.introspect(token["access_token"].as_str().unwrap()).await["active"] == json!(true)
}

fn options() -> Options {
    Options { revoke_upstream: true, single_resource: true, ..Options::default() }
}

#[tokio::test]
async fn the_page_lists_each_client_removes_one_disconnects_and_signs_out() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let desktop = named_client(&app, "Desktop <b>Agent</b>", "http://127.0.0.1/callback").await;
    let web = named_client(&app, "Web Chat", "https://chat.example/oauth/callback").await;
    let browser = app.browser();
    let first = tokens(&app, &browser, &desktop, "ann").await;
    let second = tokens(&app, &browser, &web, "ann").await;
    assert_eq!(app.upstream.counts().logins, 1, "the second client reused the connection");

    // The browser that authorized is signed in: one card per client, escaped, with badges.
    let (status, html) = page(&browser, &app.url("/account")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Desktop &lt;b&gt;Agent&lt;/b&gt;") && !html.contains("<b>Agent"), "escaped: {html}");
    assert!(html.contains("Web Chat") && html.contains("chat.example"), "{html}");
    assert_eq!(html.matches("Not verified").count(), 2, "both registered themselves: {html}");
    assert!(
        html.contains("<code>files:read</code>") && html.contains("<code>repo:read</code>"),
        "scopes both sides: {html}"
    );
    assert!(html.contains("Disconnect Dev Upstream"), "{html}");
    assert!(html.contains("/assets/tether.css"), "{html}");
    let token = field(&html, "form_token").to_owned();

    // A form without the token, with another session's, or from another site does nothing.
    let remove = app.url("/account/remove");
    let desktop_id = desktop.client_id.as_str();
    let (status, _) = post(&browser, &remove, &[("client_id", desktop_id)]).await;
    assert_eq!(status, 403, "no form token");
    let (status, _) = post(&browser, &remove, &[("client_id", desktop_id), ("form_token", "k1.AAAA")]).await;
    assert_eq!(status, 403, "a made-up form token");
    let cross = browser
        .client
        .post(&remove)
        .header("origin", "https://evil.example")
        .form(&[("client_id", desktop_id), ("form_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403, "another origin");
    let (status, _) = post(&app.browser(), &remove, &[("client_id", desktop_id), ("form_token", &token)]).await;
    assert_eq!(status, 403, "no session");
    assert!(active(&app, &first).await, "the refused forms removed something");

    // The confirmation says what stops working; the removal ends that client's grant only.
    let (status, html) = page(&browser, &format!("{remove}?client_id={desktop_id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("will no longer be able to use") && html.contains("is not deleted"), "{html}");
    let (status, html) = post(&browser, &remove, &[("client_id", desktop_id), ("form_token", &token)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("1 authorization ended"), "{html}");
    assert!(!active(&app, &first).await, "the removed client's access token still works");
    let refreshed = app.refresh(&desktop, first["refresh_token"].as_str().unwrap()).await;
    expect_error(refreshed, 400, "invalid_grant", "refresh after removal").await;
    assert!(active(&app, &second).await, "the other client lost its access");
    let renewed = app.refresh(&web, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(renewed.status(), 200, "the other client cannot refresh");
    let second: Value = renewed.json().await.unwrap();
    assert_eq!(app.upstream.counts().revocations, 0, "revoked upstream while another client uses it");
    let (_, html) = page(&browser, &app.url("/account")).await;
    assert!(!html.contains("Agent&lt;/b&gt;</h3>"), "the removed card is still shown: {html}");
    assert!(html.contains("was removed by you"), "the activity list: {html}");

    // Disconnecting the upstream account ends the rest and, asked to, revokes upstream.
    let start = html.find("/account/disconnect?connection=").unwrap() + "/account/disconnect?connection=".len();
    let connection = &html[start..start + html[start..].find('"').unwrap()];
    let (status, confirm) = page(&browser, &app.url(&format!("/account/disconnect?connection={connection}"))).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("name=\"upstream\" value=\"on\" checked"), "on by default: {confirm}");
    let form = [("connection", connection), ("upstream", "on"), ("form_token", token.as_str())];
    let (status, html) = post(&browser, &app.url("/account/disconnect"), &form).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("1 authorization ended") && html.contains("was revoked too"), "{html}");
    assert_eq!(app.upstream.counts().revocations, 1);
    assert!(!active(&app, &second).await);

    // Signing out ends the session in the store: the old cookie shows the sign-in page.
    let (status, html) = post(&browser, &app.url("/account/logout"), &[("form_token", &token)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Signed out"), "{html}");
    let (_, html) = page(&browser, &app.url("/account")).await;
    assert!(html.contains("Sign in with Dev Upstream"), "{html}");
}

#[tokio::test]
async fn nobody_removes_what_another_person_delegated() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let client = named_client(&app, "Shared Client", "http://127.0.0.1/callback").await;
    let (ann, bob) = (app.browser(), app.browser());
    let anns = tokens(&app, &ann, &client, "ann").await;
    tokens(&app, &bob, &client, "bob").await;
    let (_, anns_page) = page(&ann, &app.url("/account")).await;
    let start = anns_page.find("connection=").unwrap() + "connection=".len();
    let anns_connection = &anns_page[start..start + anns_page[start..].find('"').unwrap()];

    let (_, html) = page(&bob, &app.url("/account")).await;
    let token = field(&html, "form_token").to_owned();
    let (status, html) =
        post(&bob, &app.url("/account/disconnect"), &[("connection", anns_connection), ("form_token", &token)]).await;
    assert_eq!(status, 404, "{html}");
    let (status, _) = page(&bob, &app.url(&format!("/account/disconnect?connection={anns_connection}"))).await;
    assert_eq!(status, 404);
    assert!(active(&app, &anns).await, "bob ended ann's connection");

    // Bob removing "Shared Client" ends his grant, not ann's.
    let (status, html) =
        post(&bob, &app.url("/account/remove"), &[("client_id", client.client_id.as_str()), ("form_token", &token)])
            .await;
    assert_eq!(status, 200, "{html}");
    assert!(active(&app, &anns).await, "bob's removal ended ann's grant");
    let (status, _) =
        post(&bob, &app.url("/account/remove"), &[("client_id", client.client_id.as_str()), ("form_token", &token)])
            .await;
    assert_eq!(status, 404, "nothing left to remove");
}

#[tokio::test]
async fn a_new_browser_signs_in_at_the_provider_and_sees_that_identitys_grants() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let client = named_client(&app, "Remote Agent", "https://agent.example/cb").await;
    let anns = tokens(&app, &app.browser(), &client, "ann").await;

    let browser = app.browser();
    let (status, html) = page(&browser, &app.url("/account")).await;
    assert_eq!(status, 200);
    assert!(html.contains("href=\"/account/sign-in?provider=dev\""), "{html}");
    let response = browser.get(&app.url("/account/sign-in?provider=nowhere")).await;
    assert_eq!(response.status(), 400, "an unknown provider");

    // Cancelling at the provider is a page, not a redirect to some client.
    let to_upstream = location(&browser.get(&app.url("/account/sign-in?provider=dev")).await);
    let back = browser.upstream_login(&to_upstream, "ann", "deny").await;
    let denied = browser.get(&location(&back)).await;
    assert_eq!(denied.status(), 400);
    assert!(denied.text().await.unwrap().contains("You cancelled the sign-in"));

    let to_upstream = location(&browser.get(&app.url("/account/sign-in?provider=dev")).await);
    assert!(to_upstream.starts_with(&app.upstream.base_url), "{to_upstream}");
    let back = browser.upstream_login(&to_upstream, "ann", "approve").await;
    let landed = browser.get(&location(&back)).await;
    assert_eq!(location(&landed), app.url("/account"));
    let (_, html) = page(&browser, &app.url("/account")).await;
    assert!(html.contains("Remote Agent") && html.contains("agent.example"), "{html}");
    assert!(html.contains("You signed in with Dev Upstream"), "{html}");
    assert!(active(&app, &anns).await, "signing in to the page changed the grant");

    // Another person signing in at the provider sees nothing of ann's.
    let other = app.browser();
    let to_upstream = location(&other.get(&app.url("/account/sign-in?provider=dev")).await);
    let back = other.upstream_login(&to_upstream, "carol", "approve").await;
    other.get(&location(&back)).await;
    let (_, html) = page(&other, &app.url("/account")).await;
    assert!(html.contains("No application has access") && !html.contains("Remote Agent"), "{html}");
}

#[tokio::test]
async fn the_stylesheet_is_tethers_own_and_pages_allow_nothing_else() {
    let app = TestApp::spawn_with(Backend::Memory, options()).await;
    let response = app.browser().get(&app.url("/account")).await;
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("style-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = response.text().await.unwrap();
    let href = field(&html.replace("rel=\"stylesheet\" href", "name=\"css\" value"), "css").to_owned();
    let css = app.browser().get(&app.url(&href)).await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.text().await.unwrap().contains(".card"));
}

#[test]
fn providers_link_their_own_page_of_authorized_apps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    let toml = "[providers.gh]\nkind = \"github\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
        [providers.ghe]\nkind = \"github\"\nclient_id = \"c\"\nclient_secret = \"s\"\nweb_url = \"https://git.corp.example/prefix\"\n\
        [providers.corp]\nkind = \"oauth2\"\nclient_id = \"c\"\nclient_secret = \"s\"\nauthorize_url = \"https://x/a\"\n\
        token_url = \"https://x/t\"\nuserinfo_url = \"https://x/u\"\naccount_url = \"https://x/apps\"\n";
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let file = format!("client_secret_file = \"{}\"", dir.path().join("secret").display());
    let toml = toml.replace("client_secret = \"s\"", &file);
    std::fs::write(&path, &toml).unwrap();
    let (built, _) = tether::settings::load_and_build(Some(&path), 0).unwrap();
    let page =
        |id: &str| built.providers.iter().find(|p| p.id == id).unwrap().account_url.as_ref().map(ToString::to_string);
    assert_eq!(page("gh").as_deref(), Some("https://github.com/settings/applications"));
    assert_eq!(page("ghe").as_deref(), Some("https://git.corp.example/prefix/settings/applications"));
    assert_eq!(page("corp").as_deref(), Some("https://x/apps"));
    let errors = config_errors(&toml.replace("https://x/apps", "ftp://x/apps"));
    assert!(errors.contains("providers.corp.account_url"), "{errors}");
}

/// `[login]`: the page signs people in at the login provider only; their grants (made on
/// their connections) are listed, and "Remove all" ends every one of them.
#[tokio::test]
async fn under_a_login_provider_the_page_signs_in_there_and_removes_all() {
    let mut options = Options { kind: Kind::Oidc, ..options() };
    options.extra.push_str("[login]\nprovider = \"idp\"\n");
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let browser = app.browser();
    let (_, html) = page(&browser, &app.url("/account")).await;
    assert_eq!(html.matches("/account/sign-in?provider=").count(), 1, "{html}");
    let response = browser.get(&app.url("/account/sign-in?provider=dev")).await;
    assert_eq!(response.status(), 400, "a provider other than the login provider");
    let to_login = location(&browser.get(&app.url("/account/sign-in?provider=idp")).await);
    let back = browser.upstream_login(&to_login, "alice", "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));

    // Signed in at the login provider, the browser authorizes two clients (one connection).
    let one = named_client(&app, "First", "http://127.0.0.1/callback").await;
    let two = named_client(&app, "Second", "http://127.0.0.1/callback").await;
    let first = tokens(&app, &browser, &one, "alice-upstream").await;
    let second = tokens(&app, &browser, &two, "alice-upstream").await;
    let (_, html) = page(&browser, &app.url("/account")).await;
    assert!(html.contains(">First</h3>") && html.contains(">Second</h3>"), "{html}");
    assert!(html.contains("as your idp account <strong>"), "the connection, not the login: {html}");

    let (status, confirm) = page(&browser, &app.url("/account/remove-all")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("<li>First</li>") && confirm.contains("<li>Second</li>"), "{confirm}");
    let token = field(&confirm, "form_token").to_owned();
    let (status, html) = post(&browser, &app.url("/account/remove-all"), &[("form_token", &token)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("2 authorizations ended") && html.contains("was revoked too"), "{html}");
    assert!(!active(&app, &first).await && !active(&app, &second).await);
    let (_, html) = page(&browser, &app.url("/account")).await;
    assert!(html.contains("No application has access"), "{html}");
}
