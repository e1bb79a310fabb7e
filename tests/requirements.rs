//! The broker-side rows of `../shared/reference/mcp-authorization.md`, one test per ID.
//!
//! Rows tested elsewhere, under their IDs:
//! - `authorize_errors::a01_a05_a09_*`; A-02: `authorize_errors::a02_*`;
//!   `authorize_errors::a10_*`; A-12: `api_errors::a12_*`; A-05: `flow::a05_*`
//! - `api_errors::r02_r05_r06_r12_*`:
//!   `client_metadata::r08_*`; R-09: `authorize_errors::a02_r09_*`
//! - T-01, T-02, T-04, T-05, T-06: `api_errors::t0*`; B-02, B-03: `api_errors::b02_*`;
//!   B-06: `flow::b06_*`; V-01: `api_errors::v01_*`
//! - P-01..P-09 and C-03 (the MCP server's side): `mcp_server::p0*`, `mcp_server::c03_*`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use serde_json::{Value, json};

async fn metadata(app: &TestApp) -> Value {
    app.get_json("/.well-known/oauth-authorization-server").await
}

// ---- 2.1 discovery -------------------------------------------------------------------------

#[tokio::test]
async fn d01_metadata_is_served_at_the_rfc8414_path_and_the_issuer_has_no_path() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response = app.api.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let errors = config_errors("issuer = \"https://as.example.com/tenant\"\n");
    assert!(errors.contains("issuer: must be an origin without a path"), "{errors}");
}

#[tokio::test]
async fn d02_the_issuer_is_byte_identical_in_metadata_tokens_and_authorization_responses() {
    let app = TestApp::spawn(Backend::Memory).await;
    assert_eq!(metadata(&app).await["issuer"], app.base.as_str());
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "d02").await;
    assert_eq!(result["iss"], app.base);
    let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    assert_eq!(jwt_claims(tokens["access_token"].as_str().unwrap())["iss"], app.base.as_str());
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["iss"], app.base.as_str());
    let errors = config_errors("issuer = \"https://as.example.com/\"\n");
    assert!(errors.contains("must not end with `/`"), "{errors}");
}

#[tokio::test]
async fn d03_metadata_lists_what_mcp_clients_require() {
    let app = TestApp::spawn(Backend::Memory).await;
    let m = metadata(&app).await;
    let base = &app.base;
    assert_eq!(m["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(m["token_endpoint"], format!("{base}/token"));
    assert_eq!(m["registration_endpoint"], format!("{base}/register"));
    assert_eq!(m["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(m["introspection_endpoint"], format!("{base}/introspect"));
    assert_eq!(m["response_types_supported"], json!(["code"]));
    // Token exchange is MCP servers' (RFC 8693, resource credentials), listed for them.
    assert_eq!(
        m["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"])
    );
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!(["none", "client_secret_basic", "client_secret_post"])
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert_eq!(m["scopes_supported"], json!(["calendar:read", "files:read", "files:write"]));
    assert!(!m.to_string().contains("null"));
}

#[tokio::test]
async fn d04_unserved_well_known_paths_are_json_404s_and_nothing_redirects() {
    let app = TestApp::spawn(Backend::Memory).await;
    for path in [
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/nothing",
        "/.well-known/oauth-authorization-server/",
    ] {
        let response = app.api.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
    }
}

#[tokio::test]
async fn d05_openid_configuration_is_not_served_because_it_would_be_incomplete() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response = app.api.get(app.url("/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn d06_endpoints_live_at_the_origin_root_for_2025_03_26_fallback() {
    let app = TestApp::spawn(Backend::Memory).await;
    // A 2025-03-26 client without metadata uses these exact paths.
    assert_eq!(
        app.register(&json!({"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"})).await.status(),
        201
    );
    assert_eq!(app.browser().get(&app.url("/authorize")).await.status(), 400, "/authorize answers (a page)");
    let token = app.api.post(app.url("/token")).form(&[("grant_type", "x")]).send().await.unwrap();
    assert_eq!(token.status(), 400);
}

#[tokio::test]
async fn d07_the_mcp_protocol_version_header_is_accepted_and_allowed_by_cors() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response = app
        .api
        .get(app.url("/.well-known/oauth-authorization-server"))
        .header("MCP-Protocol-Version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let preflight = preflight(&app, "/.well-known/oauth-authorization-server", "GET", "mcp-protocol-version").await;
    assert!(preflight.headers()["access-control-allow-headers"].to_str().unwrap().contains("mcp-protocol-version"));
}

#[tokio::test]
async fn d08_the_issuer_does_not_follow_the_host_a_request_names() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response = app
        .api
        .get(app.url("/.well-known/oauth-authorization-server"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    let m: Value = response.json().await.unwrap();
    assert_eq!(m["issuer"], app.base.as_str());
    assert!(!m.to_string().contains("evil.example"));
}

// ---- 2.3 registration ----------------------------------------------------------------------

#[tokio::test]
async fn r01_dynamic_registration_is_advertised_and_can_be_turned_off() {
    let app = TestApp::spawn(Backend::Memory).await;
    assert!(metadata(&app).await["registration_endpoint"].is_string());
    let extra = "[registration]\nenabled = false\n".to_owned();
    let closed = TestApp::spawn_with(Backend::Memory, Options { extra, ..Options::default() }).await;
    assert!(metadata(&closed).await.get("registration_endpoint").is_none());
    let response = closed.register(&json!({"redirect_uris": [CLIENT_REDIRECT]})).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn r03_registration_answers_201_with_a_management_uri_that_reads_and_deletes() {
    let app = TestApp::spawn(Backend::Redis).await;
    let response = app.register(&json!({"client_name": "R03", "redirect_uris": [CLIENT_REDIRECT]})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let reg: Value = response.json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(reg["client_secret_expires_at"], 0);
    let uri = reg["registration_client_uri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/register/{client_id}", app.base));
    let token = reg["registration_access_token"].as_str().unwrap();

    // RFC 7592 read: the registration, without secrets.
    let read = app.api.get(uri).bearer_auth(token).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let current: Value = read.json().await.unwrap();
    assert_eq!(current["client_id"], client_id);
    assert_eq!(current["client_name"], "R03");
    assert!(current.get("client_secret").is_none() && current.get("registration_access_token").is_none());
    for bad in [None, Some("wrong-token")] {
        let mut request = app.api.get(uri);
        if let Some(bad) = bad {
            request = request.bearer_auth(bad);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
        expect_error(response, 401, "invalid_token", "management without the right token").await;
    }
    // RFC 7592 delete: the client is gone everywhere.
    assert_eq!(app.api.delete(uri).bearer_auth(token).send().await.unwrap().status(), 204);
    assert_eq!(app.api.get(uri).bearer_auth(token).send().await.unwrap().status(), 401);
    let secret = reg["client_secret"].as_str().unwrap();
    let gone = app
        .api
        .post(app.url("/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    expect_error(gone, 401, "invalid_client", "deleted client").await;
}

#[tokio::test]
async fn r04_none_means_public_and_the_default_is_a_confidential_client_with_unreserved_ids() {
    let app = TestApp::spawn(Backend::Memory).await;
    let public: Value = app
        .register(&json!({"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"}))
        .await
        .json()
        .await
        .unwrap();
    assert!(public.get("client_secret").is_none() && public.get("client_secret_expires_at").is_none());
    let default: Value = app.register(&json!({"redirect_uris": [CLIENT_REDIRECT]})).await.json().await.unwrap();
    assert_eq!(default["token_endpoint_auth_method"], "client_secret_basic");
    for value in [&default["client_id"], &default["client_secret"]] {
        let value = value.as_str().unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)), "{value}");
    }
}

#[tokio::test]
async fn r07_clients_that_never_obtain_tokens_are_collected_and_answered_invalid_client() {
    let app = TestApp::spawn(Backend::Memory).await;
    let unused = app.register_client("client_secret_post").await;
    let used = app.register_client("none").await;
    let tokens = app.tokens_for(&used, "r07").await;
    app.clock.advance(86_401); // past registration.unused_client_ttl_secs

    let page = app.browser().get(&app.authorize_url(&unused, &Pkce::new(), &[])).await;
    assert_eq!(page.status(), 400);
    let token = app
        .api
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", &unused.client_id),
            ("client_secret", unused.client_secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    // invalid_client makes the TypeScript SDK register again by itself.
    expect_error(token, 401, "invalid_client", "collected client").await;
    // The client that obtained tokens is kept.
    assert_eq!(app.refresh(&used, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
}

/// A client in use stays registered for `registration.client_ttl_secs` after its last token
/// request, renewed at most once per hundredth of that (here 36 s) rather than on every one.
#[tokio::test]
async fn r07_a_client_in_use_is_renewed_at_most_once_per_interval() {
    let extra = "[registration]\nclient_ttl_secs = 3600\n[tokens]\nrefresh_token_ttl_secs = 3600\n".to_owned();
    let app = TestApp::spawn_with(Backend::Memory, Options { extra, ..Options::default() }).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "r07-renew").await;
    let refresh = async |token: &str| -> String {
        let response = app.refresh(&client, token).await;
        assert_eq!(response.status(), 200, "the client is still registered");
        let body: Value = response.json().await.unwrap();
        body["refresh_token"].as_str().unwrap().to_owned()
    };
    // Used at 0, 3000 and 6000: each use renews it, so it outlives 3600 and 6600.
    app.clock.advance(3000);
    let token = refresh(tokens["refresh_token"].as_str().unwrap()).await;
    app.clock.advance(3000);
    let token = refresh(&token).await;
    // Used again 20 s later: within the interval, not renewed; it lapses 3600 s after 6000.
    app.clock.advance(20);
    let token = refresh(&token).await;
    app.clock.advance(3581);
    let lapsed = app.refresh(&client, &token).await;
    expect_error(lapsed, 401, "invalid_client", "renewed at 6000, not again at 6020").await;
}

#[tokio::test]
async fn r11_pre_registered_clients_authenticate_with_their_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("librechat");
    std::fs::write(&secret_file, "librechat-secret").unwrap();
    let extra = format!(
        "[clients.librechat]\nname = \"LibreChat\"\nredirect_uris = [\"{CLIENT_REDIRECT}\"]\nclient_secret_file = \"{}\"\n",
        secret_file.display()
    );
    let app = TestApp::spawn_with(Backend::Memory, Options { extra, ..Options::default() }).await;
    let client = TestClient {
        client_id: "librechat".into(),
        client_secret: Some("librechat-secret".into()),
        redirect_uri: CLIENT_REDIRECT.into(),
    };
    let tokens = app.tokens_for(&client, "r11").await;
    assert_eq!(jwt_claims(tokens["access_token"].as_str().unwrap())["client_id"], "librechat");
    let wrong = TestClient { client_secret: Some("wrong".into()), ..client };
    expect_error(
        app.refresh(&wrong, tokens["refresh_token"].as_str().unwrap()).await,
        401,
        "invalid_client",
        "wrong secret",
    )
    .await;
}

// ---- 2.4 authorization ---------------------------------------------------------------------

#[tokio::test]
async fn a03_redirect_uri_may_be_omitted_only_when_one_is_registered() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let result =
        app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[("redirect_uri", None)]), "a03").await;
    let ok = app
        .token(
            &client,
            &[("grant_type", "authorization_code"), ("code", &result["code"]), ("code_verifier", &pkce.verifier)],
        )
        .await;
    assert_eq!(ok.status(), 200, "no redirect_uri at /authorize, none needed at /token");

    let two: Value = app
        .register(
            &json!({"redirect_uris": [CLIENT_REDIRECT, "https://c.example/cb"], "token_endpoint_auth_method": "none"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let two = TestClient {
        client_id: two["client_id"].as_str().unwrap().into(),
        client_secret: None,
        redirect_uri: CLIENT_REDIRECT.into(),
    };
    let page = app.browser().get(&app.authorize_url(&two, &Pkce::new(), &[("redirect_uri", None)])).await;
    assert_eq!(page.status(), 400);
    assert!(page.headers().get("location").is_none());
}

#[tokio::test]
async fn a04_authorize_accepts_get_and_post() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let url = app.authorize_url(&client, &Pkce::new(), &[]);
    let query = url.split_once('?').unwrap().1.to_owned();
    let browser = app.browser();
    let post = browser
        .client
        .post(app.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert!(post.text().await.unwrap().contains("name=\"consent\""));
    assert_eq!(browser.get(&url).await.status(), 200);
}

#[tokio::test]
async fn a05_resource_spellings_clients_send_all_mean_the_same_server() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    for resource in [
        "https://files.example/mcp",
        "HTTPS://FILES.example/mcp",
        "https://files.example:443/mcp",
        "https://files.example/mcp?x=1",
    ] {
        let pkce = Pkce::new();
        let result = app
            .authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[("resource", Some(resource))]), "a05")
            .await;
        let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
        assert_eq!(jwt_claims(tokens["access_token"].as_str().unwrap())["aud"], RESOURCE_URI, "{resource}");
    }
}

#[tokio::test]
async fn a06_scopes_of_other_resources_are_dropped_and_offline_access_is_accepted() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[("scope", Some("files:read calendar:read offline_access"))]);
    let result = app.authorize(&app.browser(), &url, "a06").await;
    let tokens: Value = app.exchange_code(&client, &result["code"], &pkce.verifier).await.json().await.unwrap();
    assert_eq!(tokens["scope"], "files:read");
    assert!(tokens["refresh_token"].is_string());
}

#[tokio::test]
async fn a07_state_comes_back_unchanged() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let state = "a b&c=d/é+%~";
    let url = app.authorize_url(&client, &Pkce::new(), &[("state", Some(state))]);
    assert_eq!(app.authorize(&app.browser(), &url, "a07").await["state"], state);
}

#[tokio::test]
async fn a08_every_authorization_response_carries_iss_errors_included() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let ok = app.authorize(&app.browser(), &app.authorize_url(&client, &Pkce::new(), &[]), "a08").await;
    assert_eq!(ok["iss"], app.base);
    let denied = app.browser();
    let page = denied.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.text().await.unwrap();
    let response = denied.consent(&app.url("/consent"), &consent_id(&page), "deny").await;
    assert_eq!(query(&location(&response))["iss"], app.base);
}

#[tokio::test]
async fn a11_the_upstream_leg_has_its_own_random_state_and_pkce() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let url = app.authorize_url(&client, &Pkce::new(), &[]);
    let upstream = app.go_upstream(&app.browser(), &url).await;
    let q = query(&upstream);
    assert_eq!(q["client_id"], "tether-dev", "Tether's own upstream client id");
    assert_eq!(q["redirect_uri"], format!("{}/callback", app.base));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"].len(), 43, "256 random bits");
    assert_ne!(q["state"], "client-state-123");
    assert!(
        !q.contains_key("resource") && !upstream.contains(&client.client_id),
        "client parameters are not forwarded"
    );
    let other = query(&app.go_upstream(&app.browser(), &url).await);
    assert_ne!(other["state"], q["state"]);
    assert_ne!(other["code_challenge"], q["code_challenge"]);
}

#[tokio::test]
async fn a14_prompt_consent_and_unknown_parameters_pass_prompt_none_cannot() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let extra: &[(&str, Option<&str>)] = &[("prompt", Some("consent")), ("nonce", Some("n")), ("foo", Some("bar"))];
    let ok = app.authorize(&app.browser(), &app.authorize_url(&client, &Pkce::new(), extra), "a14").await;
    assert!(ok.contains_key("code"));
    let none = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[("prompt", Some("none"))])).await;
    assert_eq!(query(&location(&none))["error"], "interaction_required");
}

// ---- 2.5 token endpoint --------------------------------------------------------------------

#[tokio::test]
async fn t03_t07_the_token_response_has_the_shape_clients_parse() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "t03").await;
    let response = app.exchange_code(&client, &result["code"], &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let text = response.text().await.unwrap();
    assert!(!text.contains("null"), "{text}");
    let tokens: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].is_u64());
    let claims = jwt_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        tokens["expires_in"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        "T-07"
    );
}

#[tokio::test]
async fn t08_refresh_tokens_follow_the_registered_grant_or_offline_access() {
    let app = TestApp::spawn(Backend::Memory).await;
    let reg: Value = app
        .register(&json!({"redirect_uris": [CLIENT_REDIRECT], "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"}))
        .await
        .json()
        .await
        .unwrap();
    let code_only = TestClient {
        client_id: reg["client_id"].as_str().unwrap().into(),
        client_secret: None,
        redirect_uri: CLIENT_REDIRECT.into(),
    };
    assert!(app.tokens_for(&code_only, "t08").await.get("refresh_token").is_none());
    let pkce = Pkce::new();
    let url = app.authorize_url(&code_only, &pkce, &[("scope", Some("files:read offline_access"))]);
    let result = app.authorize(&app.browser(), &url, "t08").await;
    let tokens: Value = app.exchange_code(&code_only, &result["code"], &pkce.verifier).await.json().await.unwrap();
    assert!(tokens["refresh_token"].is_string(), "offline_access asks for one");
    let with_grant = app.register_client("none").await; // registered refresh_token, no offline_access (Claude)
    assert!(app.tokens_for(&with_grant, "t08").await["refresh_token"].is_string());
}

#[tokio::test]
async fn s01_t09_production_requires_an_https_issuer() {
    let errors = config_errors("profile = \"production\"\nissuer = \"http://tether.example.com\"\n");
    assert!(errors.contains("issuer: must be https"), "{errors}");
    let errors = config_errors("issuer = \"http://tether.example.com\"\n");
    assert!(errors.contains("issuer: must be https"), "http only for loopback in development: {errors}");
}

// ---- 2.6 audience binding and delegation ----------------------------------------------------

#[tokio::test]
async fn b01_each_token_is_bound_to_one_resource_client_user_and_grant() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "b01").await["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&access);
    assert_eq!(claims["aud"], RESOURCE_URI);
    assert_eq!(claims["client_id"], client.client_id.as_str());
    assert_eq!(claims["sub"], app.upstream.user_id("b01").to_string().as_str());
    // The grant, on the user's connection to the provider.
    assert!(claims["gid"].as_str().is_some_and(|g| tether::store::connection_of(g).is_some()), "{claims}");
}

#[tokio::test]
async fn b04_a_revoked_grant_makes_every_token_of_it_inactive() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let first = app.tokens_for(&client, "b04").await;
    let second: Value = app.refresh(&client, first["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(app.revoke(&client, second["refresh_token"].as_str().unwrap()).await.status(), 200);
    for token in [&first["access_token"], &second["access_token"]] {
        assert_eq!(app.introspect(token.as_str().unwrap()).await, json!({"active": false}));
    }
}

#[tokio::test]
async fn b05_the_client_never_sees_the_upstream_token() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "b05").await;
    let body = app.exchange_code(&client, &result["code"], &pkce.verifier).await.text().await.unwrap();
    let tokens: Value = serde_json::from_str(&body).unwrap();
    let claims = jwt_claims(tokens["access_token"].as_str().unwrap()).to_string();
    for leaked in ["dev_at_", "dev_rt_"] {
        assert!(!body.contains(leaked) && !claims.contains(leaked), "{leaked}");
    }
    assert!(
        app.introspect(tokens["access_token"].as_str().unwrap()).await["upstream"]["access_token"]
            .as_str()
            .unwrap()
            .starts_with("dev_at_")
    );
}

#[tokio::test]
async fn b07_introspection_is_advertised_with_its_authentication() {
    let app = TestApp::spawn(Backend::Memory).await;
    let m = metadata(&app).await;
    assert_eq!(m["introspection_endpoint"], format!("{}/introspect", app.base));
    assert_eq!(m["introspection_endpoint_auth_methods_supported"], json!(["client_secret_basic"]));
    assert!(m["jwks_uri"].is_string());
}

// ---- 2.7 CORS ------------------------------------------------------------------------------

async fn preflight(app: &TestApp, path: &str, method: &str, headers: &str) -> reqwest::Response {
    app.api
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn c01_browser_clients_get_cors_on_discovery_registration_token_and_revocation() {
    let app = TestApp::spawn(Backend::Memory).await;
    for (path, method) in [
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/.well-known/jwks.json", "GET"),
        ("/register", "POST"),
        ("/token", "POST"),
        ("/revoke", "POST"),
    ] {
        let response = preflight(&app, path, method, "content-type, authorization, mcp-protocol-version").await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(response.headers().get("access-control-allow-credentials").is_none(), "{path}: never credentials");
    }
    // The actual response carries the header too, also for errors.
    let token = app
        .api
        .post(app.url("/token"))
        .header("origin", "http://localhost:6274")
        .form(&[("grant_type", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn c02_authorize_and_introspect_have_no_cors() {
    let app = TestApp::spawn(Backend::Memory).await;
    for (path, method) in [("/authorize", "GET"), ("/introspect", "POST")] {
        let response = preflight(&app, path, method, "authorization").await;
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
    let page = app.api.get(app.url("/authorize")).header("origin", "http://localhost:6274").send().await.unwrap();
    assert!(page.headers().get("access-control-allow-origin").is_none());
}
