//! Connections on a real Redis: one upstream sign-in per user and provider, shared by every
//! grant of that user on it. A second client, or a second resource on the same provider, gets
//! consent but no second upstream login while the browser's Tether session lasts (the
//! stand-in's sign-in counter proves it); a refresh through one grant is every grant's; the
//! provider refusing it leaves them all needing the user, and one new sign-in brings them all
//! back; revoking one grant spares its siblings upstream, revoking the last revokes upstream;
//! an operator ends a connection and every grant on it in one call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};

const OPS: &str = "ops-token-0123456789abcdef0123456789";

fn options(dir: &std::path::Path) -> Options {
    std::fs::write(dir.join("ops"), OPS).unwrap();
    let d = dir.display();
    let extra = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n[admin.tokens.ops]\nscopes = [\"grants:read\", \"grants:revoke\", \"events:read\"]\ntoken_file = \"{d}/ops\"\n"
    );
    Options { extra, revoke_upstream: true, ..Options::default() }
}

/// What one authorization in `browser` came to.
struct Authorized {
    tokens: Value,
    /// Whether the browser went through the upstream sign-in.
    signed_in_upstream: bool,
    /// The upstream scopes asked for, when it did.
    upstream_scope: Option<String>,
}

/// Authorizes `client` for `resource` in `browser`: consent, then the upstream sign-in as
/// `user` if Tether sends the browser there.
async fn authorize(app: &TestApp, browser: &Browser, client: &TestClient, resource: &str, user: &str) -> Authorized {
    let pkce = Pkce::new();
    let url = app.authorize_url(client, &pkce, &[("resource", Some(resource)), ("scope", None)]);
    let next = app.go_upstream(browser, &url).await;
    let (result, upstream_scope): (HashMap<String, String>, _) = if next.starts_with(&client.redirect_uri) {
        (query(&next), None)
    } else {
        let back = browser.upstream_login(&next, user, "approve").await;
        let to_client = browser.get(&location(&back)).await;
        assert_eq!(to_client.status(), 302, "{}", to_client.text().await.unwrap());
        (query(&location(&to_client)), Some(query(&next)["scope"].clone()))
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", result["code"].as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
        ("resource", resource),
    ];
    let response = app.token(client, &form).await;
    assert_eq!(response.status(), 200, "code exchange");
    Authorized { tokens: response.json().await.unwrap(), signed_in_upstream: upstream_scope.is_some(), upstream_scope }
}

fn access(a: &Authorized) -> &str {
    a.tokens["access_token"].as_str().unwrap()
}

fn grant_of(a: &Authorized) -> String {
    jwt_claims(access(a))["gid"].as_str().unwrap().to_owned()
}

async fn upstream_token(app: &TestApp, resource: (&str, &str), access: &str) -> Option<String> {
    let answer: Value = app.introspect_as(resource.0, resource.1, access).await.json().await.unwrap();
    answer["upstream"]["access_token"].as_str().map(str::to_owned)
}

const FILES: (&str, &str) = (RESOURCE_ID, RESOURCE_SECRET);
const CALENDAR: (&str, &str) = (OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET);

#[tokio::test]
async fn a_second_client_and_a_second_resource_reuse_the_connection_without_an_upstream_login() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, options(dir.path())).await;
    let (one, two, three) =
        (app.register_client("none").await, app.register_client("none").await, app.register_client("none").await);
    let browser = app.browser();

    let first = authorize(&app, &browser, &one, RESOURCE_URI, "ann").await;
    assert!(first.signed_in_upstream);
    assert_eq!(app.upstream.counts().logins, 1);

    // Another client, same resource: the consent page, then straight back to the client.
    let second = authorize(&app, &browser, &two, RESOURCE_URI, "ann").await;
    assert!(!second.signed_in_upstream, "a second upstream sign-in for the same connection");
    assert_eq!(app.upstream.counts().logins, 1, "the stand-in saw a second sign-in");
    let (g1, g2) = (grant_of(&first), grant_of(&second));
    assert_ne!(g1, g2, "each (client, resource) authorization is a grant of its own");
    assert_eq!(tether::store::connection_of(&g1), tether::store::connection_of(&g2), "on one connection");
    let shared = upstream_token(&app, FILES, access(&first)).await.unwrap();
    assert_eq!(upstream_token(&app, FILES, access(&second)).await.unwrap(), shared);

    // Another resource on the same provider that needs a scope the connection lacks: one
    // sign-in, asking for the union so that the files grants keep what they need...
    let calendar = authorize(&app, &browser, &three, OTHER_RESOURCE_URI, "ann").await;
    assert_eq!(calendar.upstream_scope.as_deref(), Some("user cal repo:read"));
    assert_eq!(app.upstream.counts().logins, 2);
    // ...and from then on none: the first client on the calendar too.
    let again = authorize(&app, &browser, &one, OTHER_RESOURCE_URI, "ann").await;
    assert!(!again.signed_in_upstream);
    assert_eq!(app.upstream.counts().logins, 2);
    let fresh = upstream_token(&app, CALENDAR, access(&again)).await.unwrap();
    for grant in [&first, &second] {
        assert_eq!(upstream_token(&app, FILES, access(grant)).await.unwrap(), fresh, "every grant has the new tokens");
    }

    // Another browser knows nobody: it signs in upstream.
    let other = authorize(&app, &app.browser(), &two, RESOURCE_URI, "ann").await;
    assert!(other.signed_in_upstream);
    // So does this browser once its session is over.
    app.clock.advance(3601);
    let later = authorize(&app, &browser, &three, RESOURCE_URI, "ann").await;
    assert!(later.signed_in_upstream, "the session outlived its hour");
}

#[tokio::test]
async fn grants_on_a_connection_refresh_together_and_need_the_user_together() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, options(dir.path())).await;
    let (one, two) = (app.register_client("none").await, app.register_client("none").await);
    let browser = app.browser();
    let first = authorize(&app, &browser, &one, RESOURCE_URI, "bob").await;
    let second = authorize(&app, &browser, &two, RESOURCE_URI, "bob").await;
    let before = upstream_token(&app, FILES, access(&first)).await.unwrap();

    // The upstream token expires: the first introspection refreshes it, for both grants.
    app.clock.advance(3700);
    let first = Authorized {
        tokens: app.refresh(&one, first.tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap(),
        ..first
    };
    let second = Authorized {
        tokens: app.refresh(&two, second.tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap(),
        ..second
    };
    let refreshed = upstream_token(&app, FILES, access(&first)).await.unwrap();
    assert_ne!(refreshed, before);
    assert_eq!(upstream_token(&app, FILES, access(&second)).await.unwrap(), refreshed);
    assert_eq!(app.upstream.counts().refreshes, 1, "one upstream refresh for the connection");

    // The provider stops honouring the connection: both grants need the user.
    app.upstream.revoke_all_refresh_tokens();
    app.clock.advance(3700);
    let first = Authorized {
        tokens: app.refresh(&one, first.tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap(),
        ..first
    };
    assert_eq!(app.introspect(access(&first)).await, json!({"active": false}));
    let second_access = app.refresh(&two, second.tokens["refresh_token"].as_str().unwrap()).await;
    let second_access: Value = second_access.json().await.unwrap();
    if let Some(token) = second_access["access_token"].as_str() {
        assert_eq!(app.introspect(token).await, json!({"active": false}), "the sibling needs the user too");
    }
    let admin = app.admin.clone().unwrap();
    let user: Value = reqwest::Client::new()
        .get(format!("{admin}/admin/v1/users/dev:{}", app.upstream.user_id("bob")))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["connections"][0]["status"], "needs_reauth", "{user}");

    // One new sign-in (the session does not hide a dead connection) brings every grant back.
    let third = authorize(&app, &browser, &one, RESOURCE_URI, "bob").await;
    assert!(third.signed_in_upstream, "a connection that needs the user sends them upstream");
    let token = upstream_token(&app, FILES, access(&third)).await.unwrap();
    let refreshed_first: Value =
        app.refresh(&one, first.tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(refreshed_first["error"], Value::Null, "{refreshed_first}");
    assert_eq!(upstream_token(&app, FILES, refreshed_first["access_token"].as_str().unwrap()).await.unwrap(), token);
}

#[tokio::test]
async fn revoking_one_grant_spares_its_siblings_upstream_and_an_operator_ends_the_connection_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, options(dir.path())).await;
    let (one, two, three) =
        (app.register_client("none").await, app.register_client("none").await, app.register_client("none").await);
    let browser = app.browser();
    let a = authorize(&app, &browser, &one, RESOURCE_URI, "cy").await;
    let b = authorize(&app, &browser, &two, RESOURCE_URI, "cy").await;
    let c = authorize(&app, &browser, &three, RESOURCE_URI, "cy").await;
    assert_eq!(app.upstream.counts().logins, 1);
    let upstream = upstream_token(&app, FILES, access(&a)).await.unwrap();

    // The client revokes its grant: the others, and the upstream token, keep working.
    assert_eq!(app.revoke(&one, access(&a)).await.status(), 200);
    assert_eq!(app.introspect(access(&a)).await, json!({"active": false}));
    assert_eq!(upstream_token(&app, FILES, access(&b)).await.as_deref(), Some(upstream.as_str()));
    assert_eq!(app.upstream.counts().revocations, 0, "revoked upstream while other grants use it");
    assert!(app.upstream.accepts(&upstream));

    // The operator ends the connection: every grant on it, and then upstream.
    let link = tether::store::connection_of(&grant_of(&b)).unwrap().to_owned();
    let admin = app.admin.clone().unwrap();
    let api = reqwest::Client::new();
    let user: Value = api
        .get(format!("{admin}/admin/v1/users/dev:{}", app.upstream.user_id("cy")))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connection = &user["connections"][0];
    assert_eq!(
        (connection["id"].as_str(), connection["active_grants"].as_u64()),
        (Some(link.as_str()), Some(2)),
        "{user}"
    );
    assert_eq!(connection["status"], "active");
    assert_eq!(user["grants"][0]["connection"], link.as_str());
    let ended = api.delete(format!("{admin}/admin/v1/connections/{link}")).bearer_auth(OPS).send().await.unwrap();
    assert_eq!(ended.status(), 200);
    let report: Value = ended.json().await.unwrap();
    let mut ended_ids: Vec<String> =
        report["grants"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().to_owned()).collect();
    ended_ids.sort();
    let mut expected = vec![grant_of(&b), grant_of(&c)];
    expected.sort();
    assert_eq!(ended_ids, expected, "{report}");
    assert_eq!(report["upstream"], "revoked");
    for grant in [&b, &c] {
        assert_eq!(app.introspect(access(grant)).await, json!({"active": false}));
    }
    assert_eq!(app.upstream.counts().revocations, 1, "one upstream revocation, once no grant used it");
    assert!(!app.upstream.accepts(&upstream));
    let redis = app.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["HGET", &link_key(&grant_of(&b)), "st"]).trim(), "ended");
    assert_eq!(redis.cli(&["HEXISTS", &link_key(&grant_of(&b)), "up"]).trim(), "0");

    let missing =
        api.delete(format!("{admin}/admin/v1/connections/{}", "0".repeat(24))).bearer_auth(OPS).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    // The audit trail names the connection once, when it was made.
    let events: Value = api
        .get(format!("{admin}/admin/v1/events?type=connection.made&page_size=100"))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made: Vec<&Value> = events["events"].as_array().unwrap().iter().collect();
    assert_eq!(made.len(), 1, "{events}");
    assert_eq!(made[0]["data"]["details"]["connection"], link.as_str());
}
