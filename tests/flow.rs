//! The whole flow over HTTP, on both stores: register → authorize → consent → upstream →
//! callback → token → introspect → refresh → revoke → introspect inactive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn the_whole_flow_works_on_the_memory_store() {
    core_flow(&TestApp::spawn(Backend::Memory).await, "alice").await;
}

#[tokio::test]
async fn the_whole_flow_works_on_redis() {
    core_flow(&TestApp::spawn(Backend::Redis).await, "alice").await;
}

#[tokio::test]
async fn a_confidential_client_authenticates_with_basic_or_post() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("client_secret_basic").await;
    let secret = client.client_secret.clone().expect("a confidential client gets a secret");
    let tokens = app.tokens_for(&client, "bob").await;
    // The same client may also send its secret in the body (Claude's connectors do).
    let response = app
        .api
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client.client_id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn revoking_an_access_token_revokes_its_grant() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "carol").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    assert_eq!(app.revoke(&client, access).await.status(), 200);
    assert_eq!(app.introspect(access).await["active"], false);
    let refresh = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refresh.status(), 400);
}

#[tokio::test]
async fn a05_a_missing_resource_binds_to_the_only_configured_one() {
    let app = TestApp::spawn_single_resource(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[("resource", None)]), "dan").await;
    let response = app
        .token(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &result["code"]),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(jwt_claims(tokens["access_token"].as_str().unwrap())["aud"], RESOURCE_URI);
}

/// A stream entry as Redis answers XRANGE: its id and its fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// Every key and value Tether wrote to Redis, and each key's remaining time to live.
async fn dump_redis(url: &str) -> Vec<(String, Vec<u8>, i64)> {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let value: Vec<u8> = match kind.as_str() {
            "string" => ::redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap(),
            "hash" => {
                let fields: Vec<Vec<u8>> = ::redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap();
                fields.concat()
            }
            "zset" => {
                let members: Vec<Vec<u8>> =
                    ::redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
                members.concat()
            }
            "set" => {
                let members: Vec<Vec<u8>> = ::redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap();
                members.concat()
            }
            // A person's recent activity: ids of their events in the trail.
            "list" => {
                let items: Vec<Vec<u8>> =
                    ::redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
                items.concat()
            }
            // The audit trail: every event's JSON.
            "stream" => {
                let entries: Vec<StreamEntry> =
                    ::redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut conn).await.unwrap();
                entries.into_iter().flat_map(|(_, fields)| fields).flat_map(|(_, value)| value).collect()
            }
            other => panic!("unexpected Redis type {other} at {key}"),
        };
        let ttl: i64 = ::redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
        out.push((key, value, ttl));
    }
    out
}

fn assert_absent(dump: &[(String, Vec<u8>, i64)], secret: &str, what: &str) {
    for (key, value, _) in dump {
        assert!(!key.contains(secret), "{what} appears in key {key}");
        assert!(!value.windows(secret.len()).any(|w| w == secret.as_bytes()), "{what} appears in the value of {key}");
    }
}

#[tokio::test]
async fn b06_redis_holds_only_digests_and_sealed_tokens_and_every_key_expires() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("client_secret_basic").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "mallory").await;
    let url = app.redis.as_ref().unwrap().url();

    let before = dump_redis(&url).await;
    assert_absent(&before, &result["code"], "the authorization code");
    assert_absent(&before, client.client_secret.as_deref().unwrap(), "the client secret");

    let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    let upstream = app.introspect(tokens["access_token"].as_str().unwrap()).await["upstream"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = dump_redis(&url).await;
    assert_absent(&after, tokens["refresh_token"].as_str().unwrap(), "the refresh token");
    assert_absent(&after, tokens["access_token"].as_str().unwrap(), "the access token");
    assert_absent(&after, &upstream, "the upstream access token");
    assert_absent(&after, "dev_rt_", "an upstream refresh token");

    assert!(
        after.len() >= 4,
        "client, grant, refresh token and code marker: {:?}",
        after.iter().map(|k| &k.0).collect::<Vec<_>>()
    );
    for (key, _, ttl) in before.iter().chain(after.iter()) {
        assert!(key.starts_with("test:v1:"), "{key} lacks the configured prefix and schema version");
        assert!(*ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[tokio::test]
async fn the_github_kind_reads_the_numeric_user_id_and_survives_200_error_answers() {
    let app = TestApp::spawn_with(Backend::Memory, Options { kind: Kind::GitHubApp, ..Options::default() }).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let browser = app.browser();
    let page = browser.get(&app.authorize_url(&client, &pkce, &[])).await.text().await.unwrap();
    assert!(page.contains("GitHub"), "the consent page names the provider");
    let upstream = app.go_upstream(&browser, &app.authorize_url(&client, &pkce, &[])).await;
    assert!(upstream.starts_with(&format!("{}/login/oauth/authorize?", app.upstream.base_url)), "{upstream}");
    let callback = location(&browser.upstream_login(&upstream, "octocat", "approve").await);
    let to_client = browser.get(&callback).await;
    let result = query(&location(&to_client));
    let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    let answer = app.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(answer["sub"], app.upstream.user_id("octocat").to_string().as_str());
    assert_eq!(answer["upstream"]["provider"], "gh");

    // GitHub answers a bad code with 200 and `{"error": "bad_verification_code"}`: that is a
    // refusal, reported to the client as server_error, not a parse failure or a 500.
    // (Another browser: this one is signed in, and would reuse the connection.)
    let browser = app.browser();
    let upstream = app.go_upstream(&browser, &app.authorize_url(&client, &Pkce::new(), &[])).await;
    let back = location(&browser.upstream_login(&upstream, "octocat", "approve").await);
    let state = query(&back)["state"].clone();
    let forged = app.url(&format!("/callback?code=bogus&state={state}"));
    let to_client = browser.get(&forged).await;
    assert_eq!(to_client.status(), 302);
    assert_eq!(query(&location(&to_client))["error"], "server_error");
}

fn provider(kind: tether::upstream::ProviderKind, base: &str, timeout_ms: u64) -> tether::upstream::Provider {
    use tether::upstream::{ProviderConfig, TokenAuth};
    let url = |p: &str| url::Url::parse(&format!("{base}{p}")).unwrap();
    let (authorize, token) = match kind {
        tether::upstream::ProviderKind::Github => ("/login/oauth/authorize", "/login/oauth/access_token"),
        _ => ("/authorize", "/token"),
    };
    tether::upstream::Provider::new(ProviderConfig {
        id: "p".into(),
        display_name: "P".into(),
        kind,
        client_id: "tether-dev".into(),
        client_secret: Some(UPSTREAM_SECRET.to_owned().into()),
        token_auth: TokenAuth::ClientSecretBasic,
        endpoints: tether::upstream::EndpointSource::Static(Box::new(tether::upstream::StaticEndpoints {
            authorize_url: url(authorize),
            token_url: url(token),
            userinfo_url: Some(url("/user")),
            revocation_url: None,
        })),
        subject: tether::upstream::SubjectSource::Userinfo("id".into()),
        scopes: vec![],
        extra_authorize_params: vec![],
        pkce: tether::upstream::Pkce::Required,
        timeout: std::time::Duration::from_millis(timeout_ms),
        callback_url: url("/callback"),
        revoke_upstream: false,
        github_api_url: None,
        account_url: None,
        quirks: Default::default(),
    })
    .unwrap()
}

#[tokio::test]
async fn upstream_failures_are_classified_as_refusals_or_outages() {
    use tether::upstream::{ProviderKind, UpstreamError, UpstreamTokens};
    let stale = UpstreamTokens {
        access_token: "a".into(),
        token_type: "bearer".into(),
        refresh_token: Some("x".into()),
        expires_at: Some(0),
        obtained_at: None,
        refresh_expires_at: None,
        scope: None,
        extra: Default::default(),
    };
    for github in [false, true] {
        let app = TestApp::spawn_with(
            Backend::Memory,
            Options { kind: if github { Kind::GitHubApp } else { Kind::OAuth2 }, ..Options::default() },
        )
        .await;
        let kind = if github { ProviderKind::Github } else { ProviderKind::Oauth2 };
        let p = provider(kind, &app.upstream.base_url, 300);
        let verifier = "v".repeat(43);
        // A refused code is a refusal, also when GitHub-style answers say so with status 200.
        match p.exchange_code("bogus", &verifier, 0).await {
            Err(UpstreamError::Rejected { error }) => assert_eq!(error, "invalid_grant", "github={github}"),
            Err(other) => panic!("github={github}: expected a refusal, got {other:?}"),
            Ok(_) => panic!("github={github}: a bogus code was accepted"),
        }
        // 5xx with an HTML body, and a provider slower than the timeout, are outages.
        app.upstream.fail_token_endpoint(Some(502));
        assert!(matches!(p.refresh(&stale, 0).await, Err(UpstreamError::Unavailable(_))), "github={github}: 502");
        app.upstream.fail_token_endpoint(None);
        app.upstream.delay_token_endpoint(Some(std::time::Duration::from_secs(2)));
        assert!(matches!(p.refresh(&stale, 0).await, Err(UpstreamError::Unavailable(_))), "github={github}: timeout");
        app.upstream.delay_token_endpoint(None);
        // Nothing listening at all.
        let gone = provider(kind, "http://127.0.0.1:9", 300);
        assert!(
            matches!(gone.refresh(&stale, 0).await, Err(UpstreamError::Unavailable(_))),
            "github={github}: refused"
        );
    }
}
