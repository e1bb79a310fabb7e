//! RFC 8693 token exchange for MCP servers: a Tether access token addressed to the server,
//! traded for the upstream access token behind it, against real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tether::resource_server::{ExchangeStatus, IntrospectionClient, IntrospectionConfig};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

fn options() -> Options {
    Options { upstream_ttl: Some(Duration::from_secs(120)), ..Options::default() }
}

/// A token exchange as the resource `id`, with `extra` form members.
async fn exchange(app: &TestApp, id: &str, secret: &str, token: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("grant_type", GRANT), ("subject_token", token), ("subject_token_type", ACCESS)];
    form.extend_from_slice(extra);
    app.api.post(app.url("/token")).basic_auth(id, Some(secret)).form(&form).send().await.unwrap()
}

async fn signed_in(app: &TestApp, user: &str) -> (TestClient, Value) {
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, user).await;
    (client, tokens)
}

#[tokio::test]
async fn an_mcp_server_trades_its_token_for_the_fresh_upstream_one() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let (_, tokens) = signed_in(&app, "alice").await;
    let access = tokens["access_token"].as_str().unwrap();

    let response = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["issued_token_type"], ACCESS);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 120);
    assert_eq!(answer["provider"], "dev");
    assert!(answer["scope"].as_str().unwrap().contains("repo:read"), "{answer}");
    assert!(answer.get("refresh_token").is_none(), "never the upstream refresh token: {answer}");
    let upstream = answer["access_token"].as_str().unwrap();
    assert!(app.upstream.accepts(upstream), "the provider takes it");
    let introspected = app.introspect(access).await;
    assert_eq!(introspected["upstream"]["access_token"], upstream, "the same credential introspection gives");

    // Near expiry the exchange refreshes the upstream token first, as introspection does.
    app.clock.advance(61);
    let answer: Value = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &[]).await.json().await.unwrap();
    assert_ne!(answer["access_token"], upstream);
    assert!(app.upstream.accepts(answer["access_token"].as_str().unwrap()));
    assert_eq!(answer["expires_in"], 120);
    assert_eq!(app.upstream.counts().refreshes, 1);

    // Naming the provider, or the scopes the upstream grant has, is fine.
    let named = [("audience", "dev"), ("scope", "repo:read")];
    assert_eq!(exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &named).await.status(), 200);
}

#[tokio::test]
async fn every_refusal_has_its_rfc_8693_code() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let (client, tokens) = signed_in(&app, "bob").await;
    let access = tokens["access_token"].as_str().unwrap();
    for (extra, status, error) in [
        (vec![("subject_token_type", "urn:ietf:params:oauth:token-type:id_token")], 400, "invalid_request"),
        (vec![("actor_token", "x"), ("actor_token_type", ACCESS)], 400, "invalid_request"),
        (vec![("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")], 400, "invalid_request"),
        (vec![("audience", "github")], 400, "invalid_target"),
        (vec![("resource", "https://api.example.com")], 400, "invalid_target"),
        (vec![("scope", "admin")], 400, "invalid_scope"),
    ] {
        let mut form = vec![("grant_type", GRANT), ("subject_token", access)];
        if !extra.iter().any(|(k, _)| *k == "subject_token_type") {
            form.push(("subject_token_type", ACCESS));
        }
        form.extend(extra.iter().copied());
        let response = app
            .api
            .post(app.url("/token"))
            .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap();
        expect_error(response, status, error, &format!("{extra:?}")).await;
    }
    // Not a token, another server's credentials, a client's credentials, no credentials.
    let response = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, "not-a-token", &[]).await;
    expect_error(response, 400, "invalid_request", "garbage").await;
    let response = exchange(&app, OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, access, &[]).await;
    expect_error(response, 400, "invalid_request", "a token addressed to another server").await;
    let response = exchange(&app, RESOURCE_ID, "wrong-secret", access, &[]).await;
    expect_error(response, 401, "invalid_client", "wrong secret").await;
    let confidential = app.register_client("client_secret_basic").await;
    let secret = confidential.client_secret.clone().unwrap();
    let response = exchange(&app, &confidential.client_id, &secret, access, &[]).await;
    expect_error(response, 401, "invalid_client", "MCP clients cannot exchange").await;
    // A revoked grant's token is no subject token any more.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(app.revoke(&client, refresh).await.status(), 200);
    let response = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &[]).await;
    expect_error(response, 400, "invalid_request", "revoked").await;
    // Not one of the refusals handed out the credential, so the trail shows no release.
    let events = events_until(&app, |events| has(events, "grant.revoked")).await;
    assert!(!has(&events, "credential.released"), "{:?}", types(&events));
}

#[tokio::test]
async fn metadata_advertises_it_and_the_server_module_exchanges_with_a_bounded_cache() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let metadata: Value =
        app.api.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert!(metadata["grant_types_supported"].as_array().unwrap().contains(&json!(GRANT)), "{metadata}");

    let (client, tokens) = signed_in(&app, "cy").await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut config = IntrospectionConfig::new(app.url("/introspect"), RESOURCE_ID, RESOURCE_SECRET);
    config.max_cache = Duration::from_secs(30);
    let server = IntrospectionClient::with_clock(config, Arc::new(app.clock.clone())).unwrap();
    let ExchangeStatus::Exchanged(first) = server.exchange(access).await.unwrap() else { panic!("not exchanged") };
    assert!(app.upstream.accepts(first.access_token.expose_secret()));
    assert_eq!(first.expires_at, Some(app.clock.now_secs() + 120));
    assert_eq!(first.provider, "dev");
    assert!(!format!("{first:?}").contains("dev_at_"), "Debug never prints the token");
    // Cached within max_cache; after it Tether is asked again.
    assert_eq!(app.upstream.token_calls(), 1);
    let ExchangeStatus::Exchanged(again) = server.exchange(access).await.unwrap() else { panic!() };
    assert_eq!(again.access_token.expose_secret(), first.access_token.expose_secret());
    assert_eq!(app.revoke(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    assert!(matches!(server.exchange(access).await.unwrap(), ExchangeStatus::Exchanged(_)), "served from the cache");
    app.clock.advance(31);
    assert!(matches!(server.exchange(access).await.unwrap(), ExchangeStatus::Inactive), "revoked, after max_cache");
}

fn chain_options() -> Options {
    Options {
        files: "may_exchange_for = [\"calendar\"]".into(),
        // The calendar server also offers files:read, so a chained token can carry it.
        extra: "[[resources.calendar.scopes]]\nname = \"files:read\"\nupstream = [\"repo:read\"]".into(),
        ..options()
    }
}

#[tokio::test]
async fn an_mcp_server_may_pass_the_user_on_to_the_servers_it_is_allowed_to() {
    let app = TestApp::spawn_with(Backend::Redis, chain_options()).await;
    let (client, tokens) = signed_in(&app, "dana").await;
    let access = tokens["access_token"].as_str().unwrap();

    let response = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &[("audience", OTHER_RESOURCE_ID)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let chained: Value = response.json().await.unwrap();
    assert_eq!(chained["issued_token_type"], ACCESS);
    assert_eq!(chained["token_type"], "Bearer");
    assert_eq!(chained["scope"], "files:read", "narrowed to what both servers offer");
    assert_eq!(chained["expires_in"], 300, "short-lived");
    assert!(chained.get("refresh_token").is_none());
    let next = chained["access_token"].as_str().unwrap();

    // The next server sees who acts, and the same user's upstream credential.
    let seen: Value = app.introspect_as(OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, next).await.json().await.unwrap();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["aud"], OTHER_RESOURCE_URI);
    assert_eq!(seen["sub"], app.upstream.user_id("dana").to_string());
    assert_eq!(seen["act"], json!({"sub": RESOURCE_URI}));
    let original = app.introspect(access).await;
    assert_eq!(seen["upstream"]["access_token"], original["upstream"]["access_token"]);
    // Addressed to the calendar server only; and the calendar server may not chain further.
    assert_eq!(app.introspect(next).await, json!({"active": false}));
    let response = exchange(&app, OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, next, &[("audience", RESOURCE_ID)]).await;
    expect_error(response, 400, "invalid_target", "calendar may not exchange").await;
    let answer: Value = exchange(&app, OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, next, &[]).await.json().await.unwrap();
    assert_eq!(answer["access_token"], original["upstream"]["access_token"], "but may use the credential");

    // By URI too; never wider than what the calendar server offers; one target at a time.
    let by_uri = [("resource", OTHER_RESOURCE_URI)];
    assert_eq!(exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &by_uri).await.status(), 200);
    let wider = [("audience", OTHER_RESOURCE_ID), ("scope", "files:write")];
    expect_error(exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &wider).await, 400, "invalid_scope", "wider")
        .await;
    let two = [("audience", OTHER_RESOURCE_ID), ("resource", RESOURCE_URI)];
    expect_error(exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &two).await, 400, "invalid_target", "two").await;

    // It lives five minutes (and the few seconds of clock leeway), and no longer than its grant.
    app.clock.advance(306);
    let seen = app.introspect_as(OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, next).await.json::<Value>().await.unwrap();
    assert_eq!(seen, json!({"active": false}), "expired");
    let fresh: Value = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &[("audience", OTHER_RESOURCE_ID)])
        .await
        .json()
        .await
        .unwrap();
    let fresh = fresh["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.revoke(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    let seen = app.introspect_as(OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, &fresh).await.json::<Value>().await.unwrap();
    assert_eq!(seen, json!({"active": false}), "revoking the grant ends the chain's tokens");
}

#[tokio::test]
async fn servers_without_permission_cannot_chain() {
    let app = TestApp::spawn_with(Backend::Redis, options()).await;
    let (_, tokens) = signed_in(&app, "eve").await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = exchange(&app, RESOURCE_ID, RESOURCE_SECRET, access, &[("audience", OTHER_RESOURCE_ID)]).await;
    expect_error(response, 400, "invalid_target", "no may_exchange_for").await;
}

#[test]
fn chains_are_checked_in_the_configuration() {
    let base =
        "[providers.p]\nkind = \"github\"\nclient_id = \"c\"\n[providers.q]\nkind = \"github\"\nclient_id = \"c\"\n";
    let resource = |id: &str, provider: &str, may: &str| {
        format!(
            "[resources.{id}]\nuri = \"https://{id}.example/mcp\"\nprovider = \"{provider}\"\nmay_exchange_for = [{may}]\n"
        )
    };
    for (toml, says) in [
        (format!("{base}{}", resource("a", "p", "\"nowhere\"")), "unknown resource `nowhere`"),
        (format!("{base}{}", resource("a", "p", "\"a\"")), "cannot chain to itself"),
        (format!("{base}{}{}", resource("a", "p", "\"b\""), resource("b", "q", "")), "one upstream credential"),
    ] {
        let errors = config_errors(&toml);
        assert!(errors.contains("resources.a.may_exchange_for") && errors.contains(says), "{says}: {errors}");
    }
}
