//! The admin API on real instances and a real Redis: who may call it, listings by every
//! filter, pagination that neither repeats nor skips while grants come and go, bulk
//! revocation seen by every replica at once, dangling listing entries, and the committed
//! OpenAPI description.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tether::store::{GrantIndex, GrantInfo, GrantRecord, GrantStore, IndexKey, RedisStore, RedisTarget};

const OPS: &str = "ops-token-0123456789abcdef0123456789";
const VIEWER: &str = "viewer-token-0123456789abcdef012345";

/// The admin API on, with an all-powerful token and a read-only one (files in `dir`).
fn admin_options(dir: &std::path::Path) -> Options {
    std::fs::write(dir.join("ops"), OPS).unwrap();
    std::fs::write(dir.join("viewer"), VIEWER).unwrap();
    let d = dir.display();
    let extra = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n[admin.tokens.ops]\nscopes = [\"grants:read\", \"grants:revoke\", \"events:read\"]\ntoken_file = \"{d}/ops\"\n[admin.tokens.viewer]\nscopes = [\"grants:read\"]\ntoken_file = \"{d}/viewer\"\n"
    );
    Options { extra, ..Options::default() }
}

struct Admin {
    base: String,
    api: reqwest::Client,
}

impl Admin {
    fn of(app: &TestApp) -> Self {
        Self { base: app.admin.clone().expect("the admin API is on"), api: reqwest::Client::new() }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.api.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.call(reqwest::Method::GET, path, Some(OPS), None).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.call(reqwest::Method::POST, path, Some(OPS), Some(body)).await;
        assert_eq!(response.status(), 200, "POST {path}");
        response.json().await.unwrap()
    }

    /// Every grant id a listing query gives, page by page.
    async fn walk(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sep = if query.is_empty() { "" } else { "&" };
            let page_token = token.as_ref().map(|t| format!("&page_token={t}")).unwrap_or_default();
            let page = self.get(&format!("/admin/v1/grants?page_size=100{sep}{query}{page_token}")).await;
            ids.extend(page["grants"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap().to_owned()));
            match page["next_page_token"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => return ids,
            }
        }
    }
}

fn grant_of(tokens: &Value) -> String {
    jwt_claims(tokens["access_token"].as_str().unwrap())["gid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn no_token_no_access_and_each_route_needs_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, admin_options(dir.path())).await;
    let admin = Admin::of(&app);
    let client = app.register_client("none").await;
    let grant = grant_of(&app.tokens_for(&client, "ada").await);
    use reqwest::Method;
    for (method, path) in [
        (Method::GET, "/admin/v1/grants".to_owned()),
        (Method::GET, format!("/admin/v1/grants/{grant}")),
        (Method::DELETE, format!("/admin/v1/grants/{grant}")),
        (Method::GET, "/admin/v1/events".to_owned()),
    ] {
        for token in [None, Some("not-a-token"), Some("ops-token-0123456789abcdef012345678X")] {
            let response = admin.call(method.clone(), &path, token, None).await;
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""), "{method} {path}");
            expect_error(response, 401, "invalid_token", &format!("{method} {path} with {token:?}")).await;
        }
    }
    let refused = admin.call(Method::DELETE, &format!("/admin/v1/grants/{grant}"), Some(VIEWER), None).await;
    let body = expect_error(refused, 403, "insufficient_scope", "a read-only token revoking").await;
    assert_eq!(body["error_description"], "the admin token lacks grants:revoke");
    let refused = admin.call(Method::GET, "/admin/v1/events", Some(VIEWER), None).await;
    expect_error(refused, 403, "insufficient_scope", "a read-only token reading events").await;
    let shown = admin.call(Method::GET, &format!("/admin/v1/grants/{grant}"), Some(VIEWER), None).await;
    assert_eq!(shown.status(), 200);
    let shown: Value = shown.json().await.unwrap();
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["client"]["registration"], "dynamic");
    assert_eq!(shown["client"]["name"], "Test Client");
    assert_eq!(shown["client"]["redirect_host"], "127.0.0.1");
    assert_eq!(shown["resource"]["uri"], RESOURCE_URI);
    assert!(!shown.to_string().contains("access_token"), "never token material: {shown}");
    let missing = admin.call(Method::GET, "/admin/v1/grants/nope", Some(OPS), None).await;
    expect_error(missing, 404, "not_found", "an unknown grant").await;
    // The public listener has no admin API.
    let public = app.api.get(app.url("/admin/v1/grants")).bearer_auth(OPS).send().await.unwrap();
    assert_eq!(public.status(), 404);

    // Every call was audited with the token's id, the refused ones too, never the token.
    let events = admin.get("/admin/v1/events?type=admin.call&page_size=500").await;
    let calls = events["events"].as_array().unwrap();
    let denied = calls.iter().filter(|e| e["data"]["outcome"] == "denied").count();
    assert_eq!(denied, 14, "12 without a valid token, 2 without the scope");
    assert!(calls.iter().any(|e| e["data"]["actor"] == json!({"type": "admin", "id": "viewer"})));
    let text = events.to_string();
    assert!(!text.contains(OPS) && !text.contains(VIEWER), "a token in the trail");
}

#[tokio::test]
async fn grants_are_listed_by_user_client_resource_provider_account_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, admin_options(dir.path())).await;
    let admin = Admin::of(&app);
    let (one, two) = (app.register_client("none").await, app.register_client("none").await);
    let a1 = grant_of(&app.tokens_for(&one, "ann").await);
    app.clock.advance(1);
    let a2 = grant_of(&app.tokens_for(&two, "ann").await);
    app.clock.advance(1);
    let b1 = grant_of(&app.tokens_for(&one, "bob").await);
    let ann = format!("dev:{}", app.upstream.user_id("ann"));
    let set = |ids: Vec<String>| ids.into_iter().collect::<BTreeSet<_>>();
    let expect = |ids: &[&String]| ids.iter().map(|s| (*s).clone()).collect::<BTreeSet<_>>();
    assert_eq!(set(admin.walk(&format!("user={ann}")).await), expect(&[&a1, &a2]));
    assert_eq!(set(admin.walk(&format!("client_id={}", one.client_id)).await), expect(&[&a1, &b1]));
    assert_eq!(set(admin.walk(&format!("resource={RESOURCE_ID}")).await), expect(&[&a1, &a2, &b1]));
    assert_eq!(set(admin.walk("provider=dev").await), expect(&[&a1, &a2, &b1]));
    assert_eq!(set(admin.walk("resource=calendar").await), BTreeSet::new());
    assert_eq!(set(admin.walk(&format!("user={ann}&client_id={}", two.client_id)).await), expect(&[&a2]));
    assert_eq!(set(admin.walk("").await), expect(&[&a1, &a2, &b1]));
    // Newest first.
    assert_eq!(admin.walk("").await.first(), Some(&b1));
    // The upstream account, by the provider's login.
    // The stand-in's /user names the account by `login`: the user name.
    assert_eq!(set(admin.walk("provider=dev&upstream_account=ann").await), expect(&[&a1, &a2]));
    assert_eq!(set(admin.walk("upstream_account=dev:bob").await), expect(&[&b1]));
    admin.call(reqwest::Method::DELETE, &format!("/admin/v1/grants/{a1}"), Some(OPS), None).await;
    assert_eq!(set(admin.walk("status=active").await), expect(&[&a2, &b1]));
    assert_eq!(set(admin.walk("status=revoked").await), expect(&[&a1]));
    let user = admin.get(&format!("/admin/v1/users/{ann}")).await;
    assert_eq!(user["grants"].as_array().unwrap().len(), 2);
    assert_eq!(user["connections"][0]["active_grants"], 1);
    let bad = admin.call(reqwest::Method::GET, "/admin/v1/grants?status=gone", Some(OPS), None).await;
    expect_error(bad, 400, "invalid_request", "an unknown status").await;
    let bad = admin.call(reqwest::Method::GET, "/admin/v1/grants?page_token=xyz", Some(OPS), None).await;
    expect_error(bad, 400, "invalid_request", "a made-up page token").await;
}

/// A grant as a store writes it (listings first), created at `at`.
async fn seed(store: &RedisStore, id: &str, client: &str, at: i64) {
    let info = GrantInfo {
        subject: format!("s-{id}"),
        client_id: client.into(),
        resource: RESOURCE_ID.into(),
        provider: "dev".into(),
        scope: vec!["files:read".into()],
        offline: true,
        created_at: at,
        ..GrantInfo::default()
    };
    store.index_grant(id, at, &IndexKey::of(&info), Duration::from_secs(3600)).await.unwrap();
    store.put_grant(&GrantRecord::new(id.into(), info, vec![1]), Duration::from_secs(3600)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_grants_page_without_repeats_or_gaps_while_grants_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, admin_options(dir.path())).await;
    let admin = Admin::of(&app);
    let redis = app.redis.as_ref().unwrap();
    let store = RedisStore::connect(&RedisTarget::standalone(&redis.url()), "test", Duration::from_secs(5)).unwrap();
    // Ten grants a second: pages end inside a second as well as between seconds.
    let start = 1_700_000_000;
    let mut seeded = Vec::new();
    for i in 0..5_000 {
        let id = format!("g{i:05}");
        seed(&store, &id, if i % 2 == 0 { "even" } else { "odd" }, start + i / 10).await;
        seeded.push(id);
    }
    // While the walk goes on: newer grants arrive and seeded ones are revoked.
    let churn = {
        let (base, url) = (admin.base.clone(), redis.url());
        tokio::spawn(async move {
            let store = RedisStore::connect(&RedisTarget::standalone(&url), "test", Duration::from_secs(5)).unwrap();
            let api = reqwest::Client::new();
            for i in 0..200 {
                seed(&store, &format!("new{i:03}"), "even", start + 10_000 + i).await;
                let victim = format!("g{:05}", i * 24);
                let revoked =
                    api.delete(format!("{base}/admin/v1/grants/{victim}")).bearer_auth(OPS).send().await.unwrap();
                assert_eq!(revoked.status(), 200);
            }
        })
    };
    let listed = admin.walk("").await;
    churn.await.unwrap();
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a grant was listed twice");
    for id in &seeded {
        assert!(unique.contains(id), "{id} was skipped");
    }
    let by_client = admin.walk("client_id=odd&status=active").await;
    assert_eq!(by_client.len(), 2_500, "odd grants are never revoked by the churn");
    assert_eq!(by_client.iter().collect::<HashSet<_>>().len(), 2_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bulk_revocation_ends_its_grants_on_every_replica_at_once_and_spares_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::spawn(3, admin_options(dir.path())).await;
    let admin = Admin::of(&cluster.apps[0]);
    let first = &cluster.apps[0];
    let (one, two) = (first.register_client("none").await, first.register_client("none").await);
    let mut held = Vec::new();
    for (client, user) in [(&one, "leaver"), (&two, "leaver"), (&one, "stayer"), (&two, "stayer"), (&two, "third")] {
        held.push((user, client.client_id.clone(), first.tokens_for(client, user).await));
    }
    let active = |tokens: &Value| {
        let token = tokens["access_token"].as_str().unwrap().to_owned();
        let apps: Vec<Tether> = cluster.apps.iter().map(|a| a.tether.clone()).collect();
        async move {
            let mut answers = Vec::new();
            for app in &apps {
                answers.push(app.introspect(&token).await["active"] == true);
            }
            answers
        }
    };
    for (_, _, tokens) in &held {
        assert_eq!(active(tokens).await, [true, true, true]);
    }

    let refused = admin.call(reqwest::Method::POST, "/admin/v1/grants:revoke", Some(OPS), Some(json!({}))).await;
    expect_error(refused, 400, "invalid_request", "an empty filter without all").await;
    let leaver = format!("dev:{}", cluster.apps[0].upstream.user_id("leaver"));
    let dry = admin.post("/admin/v1/grants:revoke", json!({"filter": {"user": leaver}, "dry_run": true})).await;
    assert_eq!((dry["matched"].as_u64(), dry["dry_run"].as_bool()), (Some(2), Some(true)));
    assert_eq!(active(&held[0].2).await, [true, true, true], "a dry run revokes nothing");

    // "This person left."
    let report = admin.post("/admin/v1/grants:revoke", json!({"filter": {"user": leaver}})).await;
    assert_eq!(report["matched"], 2);
    for (user, _, tokens) in &held {
        let expected = if *user == "leaver" { [false; 3] } else { [true; 3] };
        assert_eq!(active(tokens).await, expected, "{user}");
    }
    // "Client one is compromised", across users.
    let report = admin.post("/admin/v1/grants:revoke", json!({"filter": {"client_id": one.client_id}})).await;
    assert_eq!(report["matched"], 1, "the leaver's grant with it is already revoked");
    assert_eq!(active(&held[2].2).await, [false; 3]);
    assert_eq!(active(&held[3].2).await, [true; 3]);
    // "This MCP server is retired."
    let report =
        admin.post("/admin/v1/grants:revoke", json!({"filter": {"resource": RESOURCE_ID}, "upstream": false})).await;
    assert_eq!(report["matched"], 2);
    assert_eq!(report["upstream"], "skipped");
    for (_, _, tokens) in &held {
        assert_eq!(active(tokens).await, [false; 3]);
        let refreshed = cluster.apps[1].refresh(&two, tokens["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.status(), 400, "refresh after revocation");
    }
    let revoked = admin.get(&format!("/admin/v1/grants/{}", grant_of(&held[3].2))).await;
    assert_eq!(revoked["revoked"]["by"], "admin:ops");
    assert_eq!(revoked["revoked"]["reason"], "admin");
}

#[tokio::test]
async fn a_dangling_listing_entry_is_skipped_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, admin_options(dir.path())).await;
    let admin = Admin::of(&app);
    let client = app.register_client("none").await;
    let real = grant_of(&app.tokens_for(&client, "cy").await);
    let redis = app.redis.as_ref().unwrap();
    let store = RedisStore::connect(&RedisTarget::standalone(&redis.url()), "test", Duration::from_secs(5)).unwrap();
    // An entry whose grant was never written (the write failed after the listing's).
    let ghost = GrantInfo { client_id: client.client_id.clone(), provider: "dev".into(), ..GrantInfo::default() };
    store.index_grant("ghost", 4_000_000_000, &IndexKey::of(&ghost), Duration::from_secs(60)).await.unwrap();
    assert_eq!(admin.walk(&format!("client_id={}", client.client_id)).await, std::slice::from_ref(&real));
    assert_eq!(store.indexed(&IndexKey::Client(client.client_id.clone()), None, 10).await.unwrap().len(), 1, "removed");
    assert_eq!(admin.walk("").await, [real]);
}

/// `tether <args>` with the environment `env`; (exit code, stdout, stderr).
async fn tether(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("TETHER_CONFIG")
        .output()
        .await
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_and_revokes_and_says_why_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, admin_options(dir.path())).await;
    let url = app.admin.clone().unwrap();
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "dora").await;
    let grant = grant_of(&tokens);
    let ops = [("TETHER_ADMIN_URL", url.as_str()), ("TETHER_ADMIN_TOKEN", OPS)];
    let viewer = [("TETHER_ADMIN_URL", url.as_str()), ("TETHER_ADMIN_TOKEN", VIEWER)];

    let (code, out, err) = tether(&["admin", "grants", "list", "--client-id", &client.client_id], &ops).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("GRANT") && out.contains(&grant) && out.contains("dev@dora") && out.contains("(dynamic)"),
        "{out}"
    );
    let (code, out, _) = tether(&["admin", "-o", "json", "grants", "show", &grant], &ops).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["id"], grant);

    let (code, _, err) = tether(&["admin", "grants", "revoke", &grant], &viewer).await;
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "tether admin: 403: the admin token lacks grants:revoke");
    let (code, _, err) = tether(&["admin", "grants", "revoke"], &ops).await;
    assert_eq!(code, 1, "no filter and no --all");
    assert!(err.contains("400: the filter selects every grant"), "{err}");
    let (code, out, _) =
        tether(&["admin", "grants", "revoke", "--client-id", &client.client_id, "--dry-run"], &ops).await;
    assert_eq!((code, out.lines().next()), (0, Some("would end 1 grant(s)")));
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    let (code, out, _) = tether(&["admin", "grants", "revoke", &grant, "--no-upstream"], &ops).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("revoked: {grant}; upstream: skipped"));
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], false);

    let (code, out, _) = tether(&["admin", "events", "tail", "--type", "grant.revoked"], &ops).await;
    assert_eq!(code, 0);
    assert!(out.contains("grant.revoked") && out.contains(&grant) && out.contains("admin:ops"), "{out}");

    // A user's connections, and ending one with every grant on it.
    let again = app.tokens_for(&client, "dora").await;
    let link = tether::store::connection_of(&grant_of(&again)).unwrap().to_owned();
    let user = format!("dev:{}", app.upstream.user_id("dora"));
    let (code, out, err) = tether(&["admin", "users", "show", &user], &ops).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("connection {link} at dev as dora")) && out.contains("active with 1 active grant(s)"),
        "{out}"
    );
    let (code, out, err) = tether(&["admin", "connections", "revoke", &link, "--no-upstream"], &ops).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().next(), Some("ended 1 grant(s); upstream: skipped"), "{out}");
    assert_eq!(app.introspect(again["access_token"].as_str().unwrap()).await["active"], false);
    let (code, _, err) = tether(
        &["admin", "grants", "list"],
        &[("TETHER_ADMIN_URL", "http://127.0.0.1:9"), ("TETHER_ADMIN_TOKEN", OPS)],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin API at http://127.0.0.1:9"), "{err}");
}

#[tokio::test]
async fn grants_stored_before_listings_are_listed_after_a_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Redis, admin_options(dir.path())).await;
    let admin = Admin::of(&app);
    let redis = app.redis.as_ref().unwrap();
    let store = RedisStore::connect(&RedisTarget::standalone(&redis.url()), "test", Duration::from_secs(5)).unwrap();
    // A grant as the version before wrote it: its record only, none of today's fields.
    let old = GrantInfo {
        subject: "1001".into(),
        client_id: "old-client".into(),
        resource: RESOURCE_ID.into(),
        provider: "dev".into(),
        offline: true,
        created_at: 1_700_000_000,
        ..GrantInfo::default()
    };
    store.put_grant(&GrantRecord::new("oldgrant".into(), old, vec![1]), Duration::from_secs(600)).await.unwrap();
    assert!(admin.walk("client_id=old-client").await.is_empty(), "not listed yet");
    let shown = admin.get("/admin/v1/grants/oldgrant").await;
    assert_eq!((shown["status"].as_str(), shown["client"]["registration"].as_str()), (Some("active"), Some("unknown")));

    let config = dir.path().join("tether.toml");
    std::fs::write(&config, format!("[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"test\"\n", redis.url()))
        .unwrap();
    let (code, out, err) = tether(&["--config", config.to_str().unwrap(), "store", "reindex"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1 grants listed"), "{out}");
    assert_eq!(admin.walk("client_id=old-client").await, ["oldgrant"]);
}

#[tokio::test]
async fn the_committed_openapi_description_names_exactly_the_routes_served() {
    let doc: Value = serde_json::from_str(include_str!("../docs/admin-openapi.json")).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let scope = operation["x-required-scope"].as_str().unwrap().to_owned();
            assert_eq!(operation["security"][0]["adminToken"][0], scope, "{method} {path}");
            described.insert((method.to_uppercase(), path.clone(), scope));
        }
    }
    let served: BTreeSet<(String, String, String)> = tether::http::admin::ROUTES
        .iter()
        .map(|(m, p, s)| ((*m).to_owned(), (*p).to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(described, served, "docs/admin-openapi.json and http::admin::ROUTES differ");
    // Every reference resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1).map(|r| r.split('"').next().unwrap()) {
        let pointer = reference.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
    }
    // And the router serves each of them (anything else is the admin listener's 404).
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Backend::Memory, admin_options(dir.path())).await;
    let admin = Admin::of(&app);
    for (method, path, _) in &served {
        let path = path.replace("{id}", "dev:1").replace("{user}", "dev:1");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == reqwest::Method::POST).then(|| json!({"filter": {"client_id": "x"}, "dry_run": true}));
        let response = admin.call(method.clone(), &path, Some(OPS), body).await;
        let answer: Value = response.json().await.unwrap();
        assert_ne!(answer["error_description"], "no such admin route", "{method} {path} is not served");
    }
    let unknown = admin.call(reqwest::Method::GET, "/admin/v1/nothing", Some(OPS), None).await;
    expect_error(unknown, 404, "not_found", "an unknown admin route").await;
}
