//! Enterprise-managed authorization: an MCP client trades the company identity provider's
//! ID-JAG for a Tether token (RFC 7523 jwt-bearer), checked rule by rule, single use across
//! replicas. The identity provider is the login provider (the OpenID stand-in); its ID-JAG keys
//! are served over https by the document server. Real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::enterprise::{CLIENT, CLIENT_SECRET, EnterpriseIdp};
use common::tls_server::Route;
use common::*;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TYP: &str = "oauth-id-jag+jwt";
/// Login mode at the OpenID stand-in, which is also the trusted IdP, for the files server.
fn options(ent: &EnterpriseIdp) -> Options {
    Options { single_resource: true, ..ent.options(&[RESOURCE_ID], "") }
}

/// `options`, with the identity provider allowed to introduce people Tether has never seen.
fn creating_users(ent: &EnterpriseIdp) -> Options {
    let mut options = options(ent);
    options.extra = options.extra.replace("[enterprise.corp]\n", "[enterprise.corp]\ncreate_users = true\n");
    options
}

/// Signs `person` in at Tether (the login provider) in `browser`.
async fn sign_in(app: &TestApp, browser: &Browser, person: &str) {
    let to_login = location(&browser.get(&app.url("/account/sign-in?provider=idp")).await);
    let back = browser.upstream_login(&to_login, person, "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));
}

/// Signs the person in at the login provider and connects their upstream account once (a
/// browser authorization), as they would before using an agent. Returns the signed-in browser,
/// the client and its tokens.
async fn connected(app: &TestApp, person: &str) -> (Browser, TestClient, Value) {
    let browser = app.browser();
    sign_in(app, &browser, person).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let mut next = app.go_upstream(&browser, &app.authorize_url(&client, &pkce, &[])).await;
    if !next.starts_with(CLIENT_REDIRECT) {
        let back = browser.upstream_login(&next, person, "approve").await;
        next = location(&browser.get(&location(&back)).await);
    }
    let tokens = app.exchange_code(&client, &query(&next)["code"], &pkce.verifier).await.json().await.unwrap();
    (browser, client, tokens)
}

/// An ID-JAG for `person`, as the IdP issues it, with `changes` applied.
fn id_jag(app: &TestApp, upstream: &DevUpstream, person: &str, changes: &Value) -> Value {
    let now = app.clock.now_secs();
    let mut claims = json!({
        "iss": upstream.base_url, "sub": upstream.user_id(person).to_string(), "aud": app.base,
        "client_id": CLIENT, "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300,
        "resource": RESOURCE_URI, "scope": "files:read",
    });
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

async fn present(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    form.extend_from_slice(extra);
    app.api.post(app.url("/token")).basic_auth(CLIENT, Some(CLIENT_SECRET)).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn an_agent_gets_a_token_for_the_person_from_their_identity_providers_assertion() {
    let ent = EnterpriseIdp::start().await;
    let app = TestApp::spawn_with(Backend::Redis, options(&ent)).await;
    let metadata = app.get_json("/.well-known/oauth-authorization-server").await;
    assert!(metadata["grant_types_supported"].as_array().unwrap().contains(&json!(JWT_BEARER)), "{metadata}");
    assert_eq!(
        metadata["authorization_grant_profiles_supported"],
        json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
    );

    connected(&app, "erin").await;
    let assertion = ent.idp.sign(TYP, &id_jag(&app, &app.upstream, "erin", &json!({})), false);
    let response = present(&app, &assertion, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "files:read");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    // The MCP server sees an ordinary token, backed by erin's connection.
    let answer = app.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["aud"], RESOURCE_URI);
    assert_eq!(answer["client_id"], CLIENT);
    assert!(app.upstream.accepts(answer["upstream"]["access_token"].as_str().unwrap()));
    // Single use.
    expect_error(present(&app, &assertion, &[]).await, 400, "invalid_grant", "replay").await;
    assert_eq!(ent.server.hits("/jwks"), 1, "the keys are fetched once and kept");
}

#[tokio::test]
async fn every_rule_refuses_with_its_code() {
    let ent = EnterpriseIdp::start().await;
    let app = TestApp::spawn_with(Backend::Redis, options(&ent)).await;
    connected(&app, "finn").await;
    let up = &app.upstream;
    let now = app.clock.now_secs();
    // (case, assertion, request members, status, error)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("typ", ent.idp.sign("JWT", &id_jag(&app, up, "finn", &json!({})), false), vec![], 400, "invalid_grant"),
        ("forged", ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({})), true), vec![], 400, "invalid_grant"),
        (
            "issuer",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"iss": "https://evil.example"})), false),
            vec![],
            400,
            "invalid_grant",
        ),
        (
            "audience",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"aud": "https://other.example"})), false),
            vec![],
            400,
            "invalid_grant",
        ),
        (
            "client",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"client_id": "someone"})), false),
            vec![],
            400,
            "invalid_grant",
        ),
        (
            "expired",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"iat": now - 400, "exp": now - 100})), false),
            vec![],
            400,
            "invalid_grant",
        ),
        (
            "too long",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"exp": now + 3600})), false),
            vec![],
            400,
            "invalid_grant",
        ),
        (
            "no jti",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"jti": null})), false),
            vec![],
            400,
            "invalid_grant",
        ),
        (
            "resource",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({"resource": "https://nowhere.example/mcp"})), false),
            vec![],
            400,
            "invalid_target",
        ),
        (
            "two resources",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({})), false),
            vec![("resource", "https://nowhere.example/mcp")],
            400,
            "invalid_target",
        ),
        (
            "scope",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({})), false),
            vec![("scope", "admin")],
            400,
            "invalid_scope",
        ),
        (
            "beyond",
            ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({})), false),
            vec![("scope", "files:write")],
            400,
            "invalid_scope",
        ),
        ("stranger", ent.idp.sign(TYP, &id_jag(&app, up, "nobody", &json!({})), false), vec![], 400, "invalid_grant"),
        ("garbage", "not.a.jwt".to_owned(), vec![], 400, "invalid_grant"),
    ];
    for (case, assertion, extra, status, error) in cases {
        expect_error(present(&app, &assertion, &extra).await, status, error, case).await;
    }
    // A refused assertion is not spent: corrected (here: a scope it grants), it works.
    let assertion = ent.idp.sign(TYP, &id_jag(&app, up, "finn", &json!({})), false);
    expect_error(present(&app, &assertion, &[("scope", "admin")]).await, 400, "invalid_scope", "first").await;
    assert_eq!(present(&app, &assertion, &[("scope", "files:read")]).await.status(), 200);
    // Only the configured, confidential client may present them.
    let public = app.register_client("none").await;
    let response = app
        .api
        .post(app.url("/token"))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
            ("client_id", public.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "unauthorized_client", "public client").await;
}

#[tokio::test]
async fn an_assertion_is_spent_on_every_replica_at_once() {
    let ent = EnterpriseIdp::start().await;
    let cluster = TestCluster::spawn(2, options(&ent)).await;
    let (first, second) = (&cluster.apps[0], &cluster.apps[1]);
    connected(first, "gia").await;
    let assertion = ent.idp.sign(TYP, &id_jag(first, &first.upstream, "gia", &json!({})), false);
    assert_eq!(present(first, &assertion, &[]).await.status(), 200);
    expect_error(present(second, &assertion, &[]).await, 400, "invalid_grant", "the other replica").await;
}

#[test]
fn the_identity_provider_must_be_the_login_provider_and_its_keys_https() {
    let errors = config_errors(
        "[enterprise.corp]\nissuer = \"https://idp.example\"\njwks_url = \"http://idp.example/keys\"\nalgorithms = [\"HS256\"]\nresources = []\nclients = []\n",
    );
    for says in ["enterprise.corp.issuer", "enterprise.corp.jwks_url", "https URL", "HS256", "names the resources"] {
        assert!(errors.contains(says), "{says}: {errors}");
    }
}

#[tokio::test]
async fn an_identity_provider_whose_keys_cannot_be_fetched_is_an_outage_not_a_refusal() {
    let ent = EnterpriseIdp::start().await;
    ent.server.route("/jwks", Route::status(503));
    let app = TestApp::spawn_with(Backend::Redis, options(&ent)).await;
    connected(&app, "ivo").await;
    let assertion = ent.idp.sign(TYP, &id_jag(&app, &app.upstream, "ivo", &json!({})), false);
    let response = present(&app, &assertion, &[]).await;
    assert!(response.headers().contains_key("retry-after"));
    expect_error(response, 503, "temporarily_unavailable", "the JWKS is down").await;
    // Back up: the same assertion (not spent by the outage) works.
    ent.server.route("/jwks", Route::json(&ent.idp.jwks(), "max-age=300"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(present(&app, &assertion, &[]).await.status(), 200);
}

/// Presents `assertion` and returns the access token it gets.
async fn redeem(app: &TestApp, assertion: &str) -> String {
    let response = present(app, assertion, &[]).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let tokens: Value = response.json().await.unwrap();
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// The "connect first" answer for `access`: the link it hands out.
async fn asks_to_connect(app: &TestApp, access: &str, person: &str) -> String {
    let answer = app.introspect(access).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert!(answer.get("upstream").is_none(), "{answer}");
    assert_eq!(answer["upstream_error"], "interaction_required");
    // No upstream account yet: `sub` is the person at Tether, never someone else's account.
    let sub = answer["sub"].as_str().unwrap();
    assert!(sub.ends_with(&format!(":{}", app.upstream.user_id(person))), "{answer}");
    answer["interaction_uri"].as_str().unwrap().to_owned()
}

/// Under the default policy a person Tether has never seen is refused; one it knows whose
/// connection to the MCP server's provider ended gets a token whose introspection and token
/// exchange ask them to connect first; only they can follow the link, with any account, and
/// then the very same token carries that account's credential.
#[tokio::test]
async fn a_person_without_a_connection_gets_a_token_that_asks_them_to_connect_first() {
    let ent = EnterpriseIdp::start().await;
    let app = TestApp::spawn_with(Backend::Redis, options(&ent)).await;
    let assertion = ent.idp.sign(TYP, &id_jag(&app, &app.upstream, "gina", &json!({})), false);
    let refused = expect_error(present(&app, &assertion, &[]).await, 400, "invalid_grant", "never seen").await;
    assert!(refused["error_description"].as_str().unwrap().contains("has not used Tether"), "{refused}");

    // gina connects once; then her only client's access ends, and with it the connection.
    let (browser, client, tokens) = connected(&app, "gina").await;
    assert_eq!(app.revoke(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    let access = redeem(&app, &assertion).await; // the refused assertion was not spent
    let link = asks_to_connect(&app, &access, "gina").await;
    let exchanged = app
        .api
        .post(app.url("/token"))
        .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", access.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ])
        .send()
        .await
        .unwrap();
    let error = expect_error(exchanged, 400, "interaction_required", "exchange").await;
    assert_eq!(error["interaction_uri"], link.as_str());
    let html = browser.get(&app.url("/account")).await.text().await.unwrap();
    assert!(html.contains("Not connected yet"), "{html}");

    // Nobody else can start it; gina, signed in, connects whichever account she picks.
    assert_eq!(app.browser().get(&link).await.status(), 403);
    let to_upstream = browser.get(&link).await;
    assert_eq!(to_upstream.status(), 302);
    let back = browser.upstream_login(&location(&to_upstream), "gina-work", "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));
    let answer = app.introspect(&access).await;
    let upstream = answer["upstream"]["access_token"].as_str().unwrap();
    assert!(app.upstream.accepts(upstream), "{answer}");
    assert_eq!(app.upstream_user(upstream).await["login"], "gina-work");
    let html = browser.get(&app.url("/account")).await.text().await.unwrap();
    let account = format!("{}@stand-in.example", app.upstream.user_id("gina-work"));
    assert!(html.contains(&account) && !html.contains("Not connected yet"), "{html}");
    // The next assertion is an ordinary token on that connection.
    let next = ent.idp.sign(TYP, &id_jag(&app, &app.upstream, "gina", &json!({})), false);
    let answer = app.introspect(&redeem(&app, &next).await).await;
    assert!(app.upstream.accepts(answer["upstream"]["access_token"].as_str().unwrap()), "{answer}");
}

/// With `create_users`, a person Tether has never seen gets a token that asks them to
/// connect first; connecting through an ordinary authorization (not the link) serves it too.
#[tokio::test]
async fn an_identity_provider_allowed_to_create_users_introduces_new_people() {
    let ent = EnterpriseIdp::start().await;
    let app = TestApp::spawn_with(Backend::Redis, creating_users(&ent)).await;
    let assertion = ent.idp.sign(TYP, &id_jag(&app, &app.upstream, "hank", &json!({})), false);
    let access = redeem(&app, &assertion).await;
    asks_to_connect(&app, &access, "hank").await;
    expect_error(present(&app, &assertion, &[]).await, 400, "invalid_grant", "replay").await;
    // hank signs in and authorizes a client in his browser: the waiting connection takes the
    // account, and the agent's token works too.
    connected(&app, "hank").await;
    let answer = app.introspect(&access).await;
    let upstream = answer["upstream"]["access_token"].as_str().unwrap();
    assert!(app.upstream.accepts(upstream), "{answer}");
    assert_eq!(app.upstream_user(upstream).await["login"], "hank");
}

/// A connection made for a person (create_users) shows on their account page with a Connect
/// button, which takes them to the provider and makes the agent's token work; nobody can
/// connect a connection of someone else's that way.
#[tokio::test]
async fn the_account_page_connects_what_waits_for_the_person() {
    let ent = EnterpriseIdp::start().await;
    let app = TestApp::spawn_with(Backend::Redis, creating_users(&ent)).await;
    let access = redeem(&app, &ent.idp.sign(TYP, &id_jag(&app, &app.upstream, "iris", &json!({})), false)).await;
    asks_to_connect(&app, &access, "iris").await;
    let browser = app.browser();
    sign_in(&app, &browser, "iris").await;
    let html = browser.get(&app.url("/account")).await.text().await.unwrap();
    assert!(html.contains("Not connected yet") && html.contains("action=\"/account/reconnect\""), "{html}");
    let (connection, token) = (field(&html, "connection").to_owned(), field(&html, "form_token").to_owned());
    // Someone else, signed in, naming iris's connection: nothing to connect.
    let stranger = app.browser();
    sign_in(&app, &stranger, "jack").await;
    let theirs = stranger.get(&app.url("/account")).await.text().await.unwrap();
    let form = [("connection", connection.as_str()), ("form_token", field(&theirs, "form_token"))];
    let refused = stranger.client.post(app.url("/account/reconnect")).form(&form).send().await.unwrap();
    assert_eq!(refused.status(), 404);
    // Without the form token, nothing either.
    let forged = browser.client.post(app.url("/account/reconnect")).form(&[("connection", &connection)]).send().await;
    assert_eq!(forged.unwrap().status(), 403);
    // iris connects: to the provider, back to her page, and the agent's token works.
    let form = [("connection", connection.as_str()), ("form_token", token.as_str())];
    let to_upstream = browser.client.post(app.url("/account/reconnect")).form(&form).send().await.unwrap();
    assert_eq!(to_upstream.status(), 303);
    let back = browser.upstream_login(&location(&to_upstream), "iris", "approve").await;
    assert_eq!(location(&browser.get(&location(&back)).await), app.url("/account"));
    let answer = app.introspect(&access).await;
    assert!(app.upstream.accepts(answer["upstream"]["access_token"].as_str().unwrap()), "{answer}");
    let html = browser.get(&app.url("/account")).await.text().await.unwrap();
    assert!(!html.contains("action=\"/account/reconnect\""), "connected: no button any more: {html}");
}
