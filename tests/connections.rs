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
    authorize_scoped(app, browser, client, resource, None, user).await
}

/// `authorize` asking for `scope` (the resource's default without).
async fn authorize_scoped(
    app: &TestApp,
    browser: &Browser,
    client: &TestClient,
    resource: &str,
    scope: Option<&str>,
    user: &str,
) -> Authorized {
    let pkce = Pkce::new();
    let url = app.authorize_url(client, &pkce, &[("resource", Some(resource)), ("scope", scope)]);
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

    // Another client, same resource: the consent page, which says who is signed in and which
    // account will act, then straight back to the client.
    let page = browser.get(&app.authorize_url(&two, &Pkce::new(), &[])).await.text().await.unwrap();
    assert!(page.contains("Signed in to Tether as"), "{page}");
    assert!(page.contains("ann</strong>, already connected"), "{page}");
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
    // "Connect first": the tokens stay good, with a link for the person instead of a credential.
    let answer = app.introspect(access(&first)).await;
    assert_eq!(
        (answer["active"].clone(), answer["upstream_error"].clone()),
        (json!(true), json!("interaction_required"))
    );
    assert!(answer.get("upstream").is_none(), "{answer}");
    let second_access = app.refresh(&two, second.tokens["refresh_token"].as_str().unwrap()).await;
    let second_access: Value = second_access.json().await.unwrap();
    if let Some(token) = second_access["access_token"].as_str() {
        let sibling = app.introspect(token).await;
        assert_eq!(sibling["upstream_error"], "interaction_required", "the sibling needs the user too: {sibling}");
        let link = sibling["interaction_uri"].as_str().unwrap();
        assert!(
            link.contains("/reconnect/") && sibling["interaction_uri"] != answer["interaction_uri"],
            "a link per grant"
        );
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

/// `[login]`: people sign in at the company's OpenID provider first; the user is that
/// identity, and upstream accounts become its connections.
fn login_options(dir: &std::path::Path) -> Options {
    let mut options = options(dir);
    options.kind = Kind::Oidc;
    options.extra.push_str("[login]\nprovider = \"idp\"\n");
    options
}

#[tokio::test]
async fn under_a_login_provider_the_user_signs_in_there_first_and_owns_the_connections() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, login_options(dir.path())).await;
    login_mode(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_login_mode_runs_on_a_three_primary_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RedisCluster::start();
    let options = Options {
        store: Some(format!("topology = \"cluster\"\nurl = \"{}\"", cluster.url())),
        ..login_options(dir.path())
    };
    let app = TestApp::spawn_with(Backend::Memory, options).await;
    login_mode(&app).await;
}

/// The login mode's whole flow: sign-in, consent, connection, a second client without any
/// login, the user's view, and another account replacing the connection.
async fn login_mode(app: &TestApp) {
    let (one, two) = (app.register_client("none").await, app.register_client("none").await);
    let browser = app.browser();

    // /authorize sends an unknown browser to the login provider before any consent page.
    let pkce = Pkce::new();
    let url = app.authorize_url(&one, &pkce, &[("resource", Some(RESOURCE_URI)), ("scope", None)]);
    let first = browser.get(&url).await;
    assert_eq!(first.status(), 302);
    let to_login = location(&first);
    assert!(to_login.starts_with(&format!("{}/authorize?", app.upstream.base_url)), "{to_login}");
    assert!(query(&to_login)["scope"].split(' ').any(|s| s == "openid"), "{to_login}");
    let back = browser.upstream_login(&to_login, "alice", "approve").await;
    let resumed = browser.get(&location(&back)).await;
    assert_eq!(resumed.status(), 302, "the login callback resumes the request");
    let cookies: Vec<String> =
        resumed.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("tether-session=") && c.contains("HttpOnly")), "{cookies:?}");
    let resume = location(&resumed);
    assert!(resume.starts_with(&format!("{}/authorize?", app.base)), "{resume}");
    assert_eq!(query(&resume)["client_id"], one.client_id.as_str());

    // Signed in: the consent page, then the upstream provider of the resource (here the same
    // OpenID provider, as a connection of its own), as another account.
    let next = app.go_upstream(&browser, &resume).await;
    let back = browser.upstream_login(&next, "alice-upstream", "approve").await;
    let to_client = browser.get(&location(&back)).await;
    let result = query(&location(&to_client));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", result["code"].as_str()),
        ("redirect_uri", one.redirect_uri.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
        ("resource", RESOURCE_URI),
    ];
    let tokens: Value = app.token(&one, &form).await.json().await.unwrap();
    let first = Authorized { tokens, signed_in_upstream: true, upstream_scope: None };
    assert_eq!(app.upstream.counts().logins, 2, "one login, one upstream connection");

    // A second client: consent only.
    let second = authorize(app, &browser, &two, RESOURCE_URI, "nobody").await;
    assert!(!second.signed_in_upstream);
    assert_eq!(app.upstream.counts().logins, 2, "no second login of either kind");
    let token = upstream_token(app, FILES, access(&first)).await.unwrap();
    assert_eq!(upstream_token(app, FILES, access(&second)).await.unwrap(), token);
    assert_eq!(app.upstream_user(&token).await["login"], "alice-upstream", "the connection is the upstream account");

    // The grants belong to the login identity, with the upstream account as the connection.
    let user = format!("idp:{}", app.upstream.user_id("alice"));
    let admin = app.admin.clone().unwrap();
    let shown: Value = reqwest::Client::new()
        .get(format!("{admin}/admin/v1/users/{user}"))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["grants"].as_array().map(Vec::len), Some(2), "{shown}");
    assert_eq!(shown["grants"][0]["user"]["id"], user.as_str());
    assert_eq!(shown["connections"].as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(shown["connections"][0]["provider"], "idp");
    assert_eq!(shown["connections"][0]["subject"], app.upstream.user_id("alice-upstream").to_string().as_str());
    assert_eq!(shown["connections"][0]["active_grants"], 2);

    // Connecting another account at the same provider (asking for more sends the user
    // upstream again) ends the grants made on the old one: they must not go on as the new one.
    let widened =
        authorize_scoped(app, &browser, &one, RESOURCE_URI, Some("files:read files:write"), "alice-other").await;
    assert_eq!(widened.upstream_scope.as_deref(), Some("openid repo:read repo:write"));
    let token = upstream_token(app, FILES, access(&widened)).await.unwrap();
    assert_eq!(app.upstream_user(&token).await["login"], "alice-other");
    for old in [&first, &second] {
        assert_eq!(app.introspect(access(old)).await, json!({"active": false}), "a grant of the old account");
    }
    let events: Value = reqwest::Client::new()
        .get(format!("{admin}/admin/v1/events?type=grant.revoked&page_size=100"))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons: Vec<&str> =
        events["events"].as_array().unwrap().iter().map(|e| e["data"]["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["connection_replaced", "connection_replaced"], "{events}");
}

#[tokio::test]
async fn the_login_provider_must_be_an_openid_provider_of_the_registry() {
    let errors = config_errors("[login]\nprovider = \"nowhere\"\n");
    assert!(errors.contains("login.provider: `nowhere` is not in [providers]"), "{errors}");
    let errors = config_errors(
        "[login]\nprovider = \"plain\"\n[providers.plain]\nkind = \"oauth2\"\nclient_id = \"t\"\nclient_secret = \"s\"\nauthorize_url = \"https://x/a\"\ntoken_url = \"https://x/t\"\nuserinfo_url = \"https://x/u\"\n",
    );
    assert!(errors.contains("login.provider: must be an OpenID provider"), "{errors}");
}

#[tokio::test]
async fn grants_of_a_resource_removed_from_the_configuration_end_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, options(dir.path())).await;
    let client = app.register_client("none").await;
    let browser = app.browser();
    let files = authorize(&app, &browser, &client, RESOURCE_URI, "dee").await;
    let calendar = authorize(&app, &browser, &client, OTHER_RESOURCE_URI, "dee").await;
    let redis = app.redis.as_ref().unwrap();
    let status = |grant: &str| redis.cli(&["HGET", &grant_key(grant), "st"]).trim().to_owned();
    let (files_grant, calendar_grant) = (grant_of(&files), grant_of(&calendar));

    // The same configuration again: nothing is removed.
    let url = redis.url();
    let same = Options { store: Some(format!("url = \"{url}\"")), ..Options::default() };
    let restarted = TestApp::spawn_with(Backend::Memory, same).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!((status(&files_grant), status(&calendar_grant)), ("active".into(), "active".into()));
    drop(restarted);

    // The calendar is retired: its grants end when Tether starts without it; the files grant
    // (on the same connection) and the upstream authorization stay.
    let retired = Options { store: Some(format!("url = \"{url}\"")), single_resource: true, ..Options::default() };
    let _restarted = TestApp::spawn_with(Backend::Memory, retired).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while status(&calendar_grant) != "revoked" {
        assert!(
            std::time::Instant::now() < deadline,
            "the retired resource's grant is still {}",
            status(&calendar_grant)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(redis.cli(&["HGET", &grant_key(&calendar_grant), "rr"]).trim(), "resource_removed");
    assert_eq!(redis.cli(&["HGET", &grant_key(&calendar_grant), "rb"]).trim(), "system");
    assert_eq!(status(&files_grant), "active");
    assert_eq!(app.introspect(access(&files)).await["active"], true);
    assert_eq!(app.upstream.counts().revocations, 0, "the files grant still uses the connection");
}

/// A grant as the version before connections wrote it: a 32-hex id, the sealed upstream
/// tokens in the grant itself (bound to the grant), and a refresh token of that version.
/// Returns the grant id and the refresh token.
async fn grant_before_connections(
    cluster: &TestCluster,
    keys: &std::path::Path,
    from: &Authorized,
    client: &TestClient,
) -> (String, String) {
    use tether::store::{GrantRecord, GrantStore, LinkStore, RefreshRecord, RefreshStatus, RefreshStore};
    let store = tether::store::RedisStore::connect(
        &tether::store::RedisTarget::standalone(&cluster.redis.url()),
        "test",
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let ring =
        tether::crypto::seal::KeyRing::parse(&std::fs::read_to_string(keys.join("encryption")).unwrap()).unwrap();
    let vault = tether::oauth::vault::Vault::new(ring);
    // The upstream tokens of a real sign-in, and the grant's record as it was.
    let linked = store.grant(&grant_of(from)).await.unwrap().unwrap();
    let link = store.link(tether::store::connection_of(&linked.id).unwrap()).await.unwrap().unwrap();
    let tokens = vault.open_link(&link).unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sealed = vault.seal(&id, &linked.info, &tokens).unwrap();
    store
        .put_grant(&GrantRecord::new(id.clone(), linked.info.clone(), sealed), std::time::Duration::from_secs(86_400))
        .await
        .unwrap();
    let token = tether::crypto::random::token();
    let record = RefreshRecord {
        grant_id: id.clone(),
        client_id: client.client_id.clone(),
        issued_at: tether::clock::Clock::now(&cluster.apps[0].clock) - 60,
        status: RefreshStatus::Active,
        rotated_at: None,
    };
    store
        .put_refresh(&tether::crypto::hash::digest(&token), &record, std::time::Duration::from_secs(86_400))
        .await
        .unwrap();
    (id, token)
}

#[tokio::test]
async fn grants_written_before_connections_keep_working_and_end_alone() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_files();
    let key_dir = keys.path().to_owned();
    let cluster = TestCluster::spawn_with_keys(2, options(dir.path()), keys).await;
    let app = &cluster.apps[0];
    let client = app.register_client("none").await;
    let fresh = authorize(app, &app.browser(), &client, RESOURCE_URI, "eve").await;
    let (old_grant, old_refresh) = grant_before_connections(&cluster, &key_dir, &fresh, &client).await;
    assert_eq!(tether::store::connection_of(&old_grant), None);

    // Its refresh token works on either replica, and the tokens it gets introspect with the
    // upstream credential sealed in the grant itself.
    let refreshed = cluster.apps[1].refresh(&client, &old_refresh).await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let old_access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(old_access)["gid"], old_grant.as_str());
    let upstream = upstream_token(app, FILES, old_access).await.expect("the old grant's upstream credential");
    assert!(app.upstream.accepts(&upstream));
    assert_eq!(cluster.redis.cli(&["HEXISTS", &grant_key(&old_grant), "up"]).trim(), "1", "its tokens stay its own");

    // Revoking it ends it alone: the grant made since, on the connection, is untouched.
    assert_eq!(app.revoke(&client, old_access).await.status(), 200);
    assert_eq!(app.introspect(old_access).await, json!({"active": false}));
    assert_eq!(cluster.redis.cli(&["HEXISTS", &grant_key(&old_grant), "up"]).trim(), "0");
    assert_eq!(app.introspect(access(&fresh)).await["active"], true);
}
