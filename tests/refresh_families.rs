//! Refresh token families on the real application and a real Redis: the store holds one
//! family per grant however often it is refreshed, reuse of any earlier generation revokes
//! the grant, a made-up token naming a grant revokes nothing, and tokens issued before
//! families (a record per token) keep working and keep their reuse detection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use tether::clock::Clock as _;
use tether::crypto::{hash, random};
use tether::store::{RedisStore, RedisTarget, RefreshRecord, RefreshStatus, RefreshStore};

async fn refreshed(app: &TestApp, client: &TestClient, token: &str) -> Value {
    let response = app.refresh(client, token).await;
    assert_eq!(response.status(), 200, "refresh");
    response.json().await.unwrap()
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}

fn grant_of(tokens: &Value) -> String {
    jwt_claims(tokens["access_token"].as_str().unwrap())["gid"].as_str().unwrap().to_owned()
}

fn redis(app: &TestApp) -> &RedisServer {
    app.redis.as_ref().unwrap()
}

/// Every key Tether keeps (the test configuration's prefix is `test`).
fn keys(app: &TestApp) -> Vec<String> {
    let mut keys: Vec<String> = redis(app).cli(&["--scan", "--pattern", "test:*"]).lines().map(str::to_owned).collect();
    keys.sort();
    keys
}

/// A refresh token of the form Tether issued before families: 256 random bits, a record of
/// its own, written (and, with `rotated_at`, rotated) by the store code that did so then.
async fn first_form_token(app: &TestApp, client: &TestClient, grant: &str, rotated_at: Option<i64>) -> String {
    let store =
        RedisStore::connect(&RedisTarget::standalone(&redis(app).url()), "test", Duration::from_secs(2)).unwrap();
    let token = random::token();
    let record = RefreshRecord {
        grant_id: grant.to_owned(),
        client_id: client.client_id.clone(),
        issued_at: app.clock.now() - 3600,
        status: RefreshStatus::Active,
        rotated_at: None,
    };
    let digest = hash::digest(&token);
    store.put_refresh(&digest, &record, Duration::from_secs(86_400)).await.unwrap();
    if let Some(at) = rotated_at {
        store.rotate(&digest, at, b"a successor long gone", Duration::from_secs(1)).await.unwrap();
    }
    token
}

/// A grant as a version before families stored it: no family fields.
fn forget_family(app: &TestApp, grant: &str) {
    redis(app).cli(&["HDEL", &common::grant_key(grant), "fg", "fc", "fp", "fr"]);
}

#[tokio::test]
async fn a_grant_refreshed_many_times_keeps_the_same_keys_and_the_same_size() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let mut tokens = app.tokens_for(&client, "ada").await;
    let grant = grant_of(&tokens);
    tokens = refreshed(&app, &client, refresh_token(&tokens)).await;
    let (before, grant_key) = (keys(&app), common::grant_key(&grant));
    let size =
        |app: &TestApp| redis(app).cli(&["MEMORY", "USAGE", &grant_key, "SAMPLES", "0"]).trim().parse::<u64>().unwrap();
    let size_before = size(&app);
    for generation in 2..=200u64 {
        tokens = refreshed(&app, &client, refresh_token(&tokens)).await;
        assert!(refresh_token(&tokens).starts_with(&format!("trt.{grant}.{generation}.")), "{tokens}");
    }
    assert_eq!(keys(&app), before, "199 more refreshes added or removed keys");
    assert!(
        before.iter().any(|k| k == &common::grant_key(&grant).replace(":grant:", ":next:")),
        "the successor beside the grant: {before:?}"
    );
    assert!(!before.iter().any(|k| k.contains(":refresh:")), "no record per token: {before:?}");
    let size_after = size(&app);
    assert!(size_after <= size_before + 16, "the grant grew from {size_before} to {size_after} bytes");
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
}

#[tokio::test]
async fn reuse_of_any_earlier_generation_revokes_the_grant_but_a_made_up_token_naming_it_does_not() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let first = app.tokens_for(&client, "bea").await;
    let grant = grant_of(&first);
    let second = refreshed(&app, &client, refresh_token(&first)).await;
    let third = refreshed(&app, &client, refresh_token(&second)).await;
    let mut latest = refreshed(&app, &client, refresh_token(&third)).await;

    // Anyone who saw an access token knows the grant id and the client id; without Tether's
    // MAC their token is invalid and revokes nothing, whatever generation it names.
    let made_up = URL_SAFE_NO_PAD.encode([7u8; 48]);
    for generation in [0, 1, 2, 3, 4, 99] {
        let forged = format!("trt.{grant}.{generation}.{made_up}");
        let body = expect_error(app.refresh(&client, &forged).await, 400, "invalid_grant", "made-up token").await;
        assert!(!body["error_description"].as_str().unwrap().contains("already used"), "{body}");
        assert_eq!(app.revoke(&client, &forged).await.status(), 200, "RFC 7009 §2.2: invalid tokens are not an error");
    }
    latest = refreshed(&app, &client, refresh_token(&latest)).await;
    assert_eq!(app.introspect(latest["access_token"].as_str().unwrap()).await["active"], true, "the grant survived");

    // The first generation's real token, two rotations past the previous one: reuse.
    let body = expect_error(app.refresh(&client, refresh_token(&second)).await, 400, "invalid_grant", "reuse").await;
    assert!(body["error_description"].as_str().unwrap().contains("already used"), "{body}");
    expect_error(app.refresh(&client, refresh_token(&latest)).await, 400, "invalid_grant", "after reuse").await;
    assert_eq!(app.introspect(latest["access_token"].as_str().unwrap()).await, json!({"active": false}));
}

#[tokio::test]
async fn a_family_token_is_bound_to_its_client_and_revocable_by_it_in_any_generation() {
    let app = TestApp::spawn(Backend::Redis).await;
    let (client, other) = (app.register_client("none").await, app.register_client("none").await);
    let first = app.tokens_for(&client, "cy").await;
    let second = refreshed(&app, &client, refresh_token(&first)).await;
    let latest = refreshed(&app, &client, refresh_token(&second)).await;
    expect_error(app.refresh(&other, refresh_token(&latest)).await, 400, "invalid_grant", "another client").await;
    assert_eq!(app.revoke(&other, refresh_token(&latest)).await.status(), 200);
    assert_eq!(
        app.introspect(latest["access_token"].as_str().unwrap()).await["active"],
        true,
        "other client revoked it"
    );
    // The client revokes with a token two generations old: still its own, so the grant ends.
    assert_eq!(app.revoke(&client, refresh_token(&first)).await.status(), 200);
    assert_eq!(app.introspect(latest["access_token"].as_str().unwrap()).await, json!({"active": false}));
    expect_error(app.refresh(&client, refresh_token(&latest)).await, 400, "invalid_grant", "revoked").await;
}

#[tokio::test]
async fn a_token_issued_before_families_works_rotates_into_one_and_keeps_its_reuse_detection() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "dee").await;
    let grant = grant_of(&tokens);
    forget_family(&app, &grant);
    let old = first_form_token(&app, &client, &grant, None).await;

    let adopted = refreshed(&app, &client, &old).await;
    assert!(refresh_token(&adopted).starts_with(&format!("trt.{grant}.0.")), "{adopted}");
    // A retry within the grace window gets the same pair, from the first-form record.
    assert_eq!(refreshed(&app, &client, &old).await, adopted);
    let next = refreshed(&app, &client, refresh_token(&adopted)).await;
    assert!(refresh_token(&next).starts_with(&format!("trt.{grant}.1.")), "{next}");
    let first_form_records =
        keys(&app).into_iter().filter(|k| k.contains(":refresh:") && !k.ends_with(":next")).count();
    assert_eq!(first_form_records, 1, "the family writes no records of the first form");
    assert_eq!(app.introspect(next["access_token"].as_str().unwrap()).await["active"], true, "nothing revoked");

    app.clock.advance(31); // past the 30 s grace window
    let body = expect_error(app.refresh(&client, &old).await, 400, "invalid_grant", "first-form reuse").await;
    assert!(body["error_description"].as_str().unwrap().contains("already used"), "{body}");
    assert_eq!(app.introspect(next["access_token"].as_str().unwrap()).await, json!({"active": false}));
    expect_error(app.refresh(&client, refresh_token(&next)).await, 400, "invalid_grant", "family after reuse").await;
}

#[tokio::test]
async fn a_token_rotated_before_the_upgrade_is_still_recognised_as_reuse() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "eve").await;
    let grant = grant_of(&tokens);
    let rotated_long_ago = Some(app.clock.now() - 600);
    let old = first_form_token(&app, &client, &grant, rotated_long_ago).await;
    let body = expect_error(app.refresh(&client, &old).await, 400, "invalid_grant", "rotated before the upgrade").await;
    assert!(body["error_description"].as_str().unwrap().contains("already used"), "{body}");
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await, json!({"active": false}));
    // A first-form token of another client, or one never issued, revokes nothing.
    let (other, never) = (app.register_client("none").await, random::token());
    let mine = app.tokens_for(&client, "fay").await;
    let active = first_form_token(&app, &client, &grant_of(&mine), None).await;
    expect_error(app.refresh(&other, &active).await, 400, "invalid_grant", "another client").await;
    expect_error(app.refresh(&client, &never).await, 400, "invalid_grant", "never issued").await;
    assert_eq!(app.introspect(mine["access_token"].as_str().unwrap()).await["active"], true);
}
