//! Failure paths of the JSON endpoints, table-driven: every case asserts status and `error`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use serde_json::{Value, json};

/// A code fresh from the browser flow, with its verifier.
async fn fresh_code(app: &TestApp, client: &TestClient) -> (String, Pkce) {
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(client, &pkce, &[]), "henry").await;
    (result["code"].clone(), pkce)
}

#[tokio::test]
async fn t01_t04_the_token_endpoint_refuses_bad_code_exchanges() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let other = app.register_client("none").await;
    type Mutate = fn(&mut Vec<(String, String)>);
    fn set(form: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
        form.retain(|(n, _)| n != name);
        if let Some(v) = value {
            form.push((name.into(), v.into()));
        }
    }
    let cases: Vec<(&str, Mutate, u16, &str)> = vec![
        (
            "wrong verifier",
            |f| set(f, "code_verifier", Some("wrong-verifier-wrong-verifier-wrong-verifier-0123")),
            400,
            "invalid_grant",
        ),
        ("missing verifier", |f| set(f, "code_verifier", None), 400, "invalid_request"),
        ("unknown code", |f| set(f, "code", Some("no-such-code")), 400, "invalid_grant"),
        ("missing code", |f| set(f, "code", None), 400, "invalid_request"),
        ("mismatched redirect URI", |f| set(f, "redirect_uri", Some("http://127.0.0.1/other")), 400, "invalid_grant"),
        ("missing redirect URI", |f| set(f, "redirect_uri", None), 400, "invalid_request"),
        ("another resource", |f| set(f, "resource", Some(OTHER_RESOURCE_URI)), 400, "invalid_target"),
        ("unknown resource", |f| set(f, "resource", Some("https://nope.example/mcp")), 400, "invalid_target"),
        ("unsupported grant type", |f| set(f, "grant_type", Some("password")), 400, "unsupported_grant_type"),
        ("missing grant type", |f| set(f, "grant_type", None), 400, "invalid_request"),
    ];
    for (case, mutate, status, error) in cases {
        let (code, pkce) = fresh_code(&app, &client).await;
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code),
            ("redirect_uri".into(), client.redirect_uri.clone()),
            ("code_verifier".into(), pkce.verifier.clone()),
            ("resource".into(), RESOURCE_URI.into()),
        ];
        mutate(&mut form);
        let form: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        expect_error(app.token(&client, &form).await, status, error, case).await;
    }
    // A code presented by another client than the one it was issued to.
    let (code, pkce) = fresh_code(&app, &client).await;
    expect_error(
        app.exchange_code(&other, &code, &pkce.verifier).await,
        400,
        "invalid_grant",
        "code of another client",
    )
    .await;
}

#[tokio::test]
async fn a12_a_reused_code_is_refused_and_revokes_what_it_issued() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let (code, pkce) = fresh_code(&app, &client).await;
    let first: Value = app.exchange_code(&client, &code, &pkce.verifier).await.json().await.unwrap();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    expect_error(app.exchange_code(&client, &code, &pkce.verifier).await, 400, "invalid_grant", "reused code").await;
    assert_eq!(app.introspect(access).await["active"], false, "the first exchange's tokens are revoked");
    let refresh = app.refresh(&client, first["refresh_token"].as_str().unwrap()).await;
    expect_error(refresh, 400, "invalid_grant", "refresh after code replay").await;
}

#[tokio::test]
async fn t02_t04_the_token_endpoint_authenticates_clients() {
    let app = TestApp::spawn(Backend::Memory).await;
    let public = app.register_client("none").await;
    let confidential = app.register_client("client_secret_post").await;
    let secret = confidential.client_secret.clone().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    let post = |basic: Option<(&str, &str)>, extra: Vec<(&'static str, String)>| {
        let mut request = app.api.post(app.url("/token"));
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let mut body: Vec<(&str, String)> = form.iter().map(|(a, b)| (*a, (*b).to_owned())).collect();
        body.extend(extra);
        request.form(&body).send()
    };
    let cases = vec![
        ("no client at all", post(None, vec![]).await.unwrap(), 401, "invalid_client"),
        ("unknown client", post(None, vec![("client_id", "nobody".into())]).await.unwrap(), 401, "invalid_client"),
        (
            "wrong secret (basic)",
            post(Some((&confidential.client_id, "wrong")), vec![]).await.unwrap(),
            401,
            "invalid_client",
        ),
        (
            "wrong secret (post)",
            post(None, vec![("client_id", confidential.client_id.clone()), ("client_secret", "wrong".into())])
                .await
                .unwrap(),
            401,
            "invalid_client",
        ),
        (
            "confidential without secret",
            post(None, vec![("client_id", confidential.client_id.clone())]).await.unwrap(),
            401,
            "invalid_client",
        ),
        (
            "public client with a secret",
            post(None, vec![("client_id", public.client_id.clone()), ("client_secret", "made-up".into())])
                .await
                .unwrap(),
            401,
            "invalid_client",
        ),
        (
            "basic and body ids differ",
            post(Some((&confidential.client_id, &secret)), vec![("client_id", public.client_id.clone())])
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            "two methods at once",
            post(Some((&confidential.client_id, &secret)), vec![("client_secret", secret.clone())]).await.unwrap(),
            400,
            "invalid_request",
        ),
    ];
    for (case, response, status, error) in cases {
        let basic_challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        expect_error(response, status, error, case).await;
        if status == 401 {
            assert_eq!(basic_challenge.as_deref(), Some("Basic realm=\"tether\""), "{case}");
        }
    }
    // Authenticated, so the grant itself is judged: an unknown refresh token.
    let ok_auth = post(Some((&confidential.client_id, &secret)), vec![]).await.unwrap();
    expect_error(ok_auth, 400, "invalid_grant", "authenticated client, unknown refresh token").await;
}

#[tokio::test]
async fn t05_t06_refresh_tokens_are_bound_to_their_client_and_cannot_widen_scope() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let other = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "ivy").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    expect_error(app.refresh(&other, refresh).await, 400, "invalid_grant", "another client's refresh token").await;
    let widen = app
        .token(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "files:read files:write")],
        )
        .await;
    expect_error(widen, 400, "invalid_scope", "widening scope").await;
    let wrong_resource = app
        .token(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("resource", OTHER_RESOURCE_URI)],
        )
        .await;
    expect_error(wrong_resource, 400, "invalid_target", "refresh for another resource").await;
    // None of the refused attempts rotated the token: it still works.
    assert_eq!(app.refresh(&client, refresh).await.status(), 200);
}

#[tokio::test]
async fn b02_b03_introspection_is_active_only_for_the_audience_and_live_tokens() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "jack").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let mut tampered: Vec<String> = access.split('.').map(String::from).collect();
    tampered[1] = tampered[1].replace('a', "b");
    let alg_none = {
        let parts: Vec<&str> = access.split('.').collect();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoieCJ9.{}.", parts[1])
    };
    let cases: Vec<(&str, &str, &str, String)> = vec![
        ("another resource asks", OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, access.clone()),
        ("tampered claims", RESOURCE_ID, RESOURCE_SECRET, tampered.join(".")),
        ("alg none", RESOURCE_ID, RESOURCE_SECRET, alg_none),
        ("garbage", RESOURCE_ID, RESOURCE_SECRET, "not-a-token".into()),
        ("a refresh token", RESOURCE_ID, RESOURCE_SECRET, tokens["refresh_token"].as_str().unwrap().into()),
    ];
    for (case, id, secret, token) in cases {
        let response = app.introspect_as(id, secret, &token).await;
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"active": false}), "{case}");
    }
    assert_eq!(app.introspect(&access).await["active"], true, "still active for its audience");
    // Expired: ten minutes later, plus the clock-skew leeway (5 s) that keeps it active a
    // moment past `exp`.
    app.clock.advance(604);
    assert_eq!(app.introspect(&access).await["active"], true, "within the 5 s leeway after exp");
    app.clock.advance(1);
    assert_eq!(app.introspect(&access).await, json!({"active": false}), "expired");
}

#[tokio::test]
async fn b02_introspection_requires_the_resource_credentials() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = [("token", "whatever")];
    let cases = vec![
        ("no credentials", app.api.post(app.url("/introspect")).form(&token).send().await.unwrap()),
        (
            "wrong secret",
            app.api
                .post(app.url("/introspect"))
                .basic_auth(RESOURCE_ID, Some("wrong"))
                .form(&token)
                .send()
                .await
                .unwrap(),
        ),
        (
            "unknown resource",
            app.api
                .post(app.url("/introspect"))
                .basic_auth("nobody", Some(RESOURCE_SECRET))
                .form(&token)
                .send()
                .await
                .unwrap(),
        ),
        (
            "bearer instead of basic",
            app.api.post(app.url("/introspect")).bearer_auth(RESOURCE_SECRET).form(&token).send().await.unwrap(),
        ),
        (
            "a client's credentials",
            app.api
                .post(app.url("/introspect"))
                .basic_auth("tether-dev", Some(UPSTREAM_SECRET))
                .form(&token)
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (case, response) in cases {
        expect_error(response, 401, "invalid_client", case).await;
    }
    let missing = app
        .api
        .post(app.url("/introspect"))
        .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    expect_error(missing, 400, "invalid_request", "no token").await;
}

#[tokio::test]
async fn v01_revocation_answers_200_for_unknown_tokens_and_only_revokes_the_clients_own() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let other = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "kim").await;
    assert_eq!(app.revoke(&client, "unknown-token").await.status(), 200);
    // Another client cannot revoke this client's grant.
    assert_eq!(app.revoke(&other, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(app.revoke(&other, tokens["access_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    let anonymous = app.api.post(app.url("/revoke")).form(&[("token", "x")]).send().await.unwrap();
    expect_error(anonymous, 401, "invalid_client", "revoke without client").await;
    let no_token =
        app.api.post(app.url("/revoke")).form(&[("client_id", client.client_id.as_str())]).send().await.unwrap();
    expect_error(no_token, 400, "invalid_request", "revoke without token").await;
}

#[tokio::test]
async fn r02_r05_r06_r12_registration_accepts_real_client_shapes_and_refuses_bad_metadata() {
    let app = TestApp::spawn(Backend::Memory).await;
    let accepted = [
        (
            "VS Code",
            json!({"client_name": "Visual Studio Code", "client_uri": "https://code.visualstudio.com", "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"], "response_types": ["code"], "redirect_uris": ["https://insiders.vscode.dev/redirect", "https://vscode.dev/redirect", "http://127.0.0.1/", "http://127.0.0.1:33418/"], "token_endpoint_auth_method": "none", "application_type": "native", "scope": "files:read"}),
        ),
        (
            "Cursor",
            json!({"client_name": "Cursor", "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback", "https://www.cursor.com/agents/mcp/oauth/callback", "http://localhost:8787/callback"], "token_endpoint_auth_method": "none"}),
        ),
        (
            "LibreChat",
            json!({"client_name": "LibreChat", "redirect_uris": ["https://chat.example.com/api/mcp/files/oauth/callback"], "token_endpoint_auth_method": "client_secret_basic", "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "scope": "files:read files:write"}),
        ),
        (
            "Inspector",
            json!({"client_name": "MCP Inspector", "redirect_uris": ["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}),
        ),
        (
            "empty strings and unknown members",
            json!({"redirect_uris": ["https://c.example/cb"], "tos_uri": "", "policy_uri": "", "logo_uri": null, "software_statement_x": 1, "jwks": {"keys": []}}),
        ),
    ];
    for (case, body) in accepted {
        let response = app.register(&body).await;
        assert_eq!(response.status(), 201, "{case}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{case}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("null"), "{case}: no null members: {text}");
        let reg: Value = serde_json::from_str(&text).unwrap();
        assert!(
            reg["client_id"].as_str().unwrap().bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
            "{case}"
        );
        assert!(reg["client_id_issued_at"].is_i64(), "{case}");
        assert_eq!(reg["redirect_uris"], body["redirect_uris"], "{case}");
        let confidential = reg["token_endpoint_auth_method"] != "none";
        assert_eq!(reg["client_secret"].is_string(), confidential, "{case}");
        assert_eq!(reg["client_secret_expires_at"].is_u64(), confidential, "{case}");
        assert!(
            !reg["grant_types"].as_array().unwrap().iter().any(|g| g.as_str().unwrap().contains("device_code")),
            "{case}"
        );
    }
    let refused = [
        ("no redirect URIs", json!({"client_name": "x"}), "invalid_redirect_uri"),
        ("empty redirect URIs", json!({"redirect_uris": []}), "invalid_redirect_uri"),
        ("http on a public host", json!({"redirect_uris": ["http://evil.example/cb"]}), "invalid_redirect_uri"),
        ("javascript URI", json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
        ("fragment", json!({"redirect_uris": ["https://c.example/cb#x"]}), "invalid_redirect_uri"),
        (
            "web app with custom scheme",
            json!({"redirect_uris": ["cursor://x/cb"], "application_type": "web"}),
            "invalid_redirect_uri",
        ),
        (
            "private_key_jwt",
            json!({"redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            "no authorization_code grant",
            json!({"redirect_uris": ["https://c.example/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            "no code response type",
            json!({"redirect_uris": ["https://c.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        ("redirect_uris not a list", json!({"redirect_uris": "https://c.example/cb"}), "invalid_client_metadata"),
        ("a JSON array", json!([1, 2]), "invalid_client_metadata"),
        (
            "unknown application type",
            json!({"redirect_uris": ["https://c.example/cb"], "application_type": "tv"}),
            "invalid_client_metadata",
        ),
        (
            "bad client_uri",
            json!({"redirect_uris": ["https://c.example/cb"], "client_uri": "javascript:x"}),
            "invalid_client_metadata",
        ),
    ];
    for (case, body, error) in refused {
        expect_error(app.register(&body).await, 400, error, case).await;
    }
}

#[tokio::test]
async fn malformed_bodies_never_cause_a_server_error() {
    let app = TestApp::spawn(Backend::Memory).await;
    let huge = "a".repeat(100 * 1024);
    let form = "application/x-www-form-urlencoded";
    // (case, path, content type, body, status, error)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "token: JSON body",
            "/token",
            "application/json",
            br#"{"grant_type":"authorization_code"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        ("token: no content type", "/token", "", b"grant_type=x".to_vec(), 400, "invalid_request"),
        // Percent-decoding is lenient (WHATWG): `%zz` is the literal text, an unknown grant type.
        ("token: bad percent-encoding", "/token", form, b"grant_type=%zz".to_vec(), 400, "unsupported_grant_type"),
        (
            "token: repeated parameter",
            "/token",
            form,
            b"grant_type=refresh_token&grant_type=authorization_code".to_vec(),
            400,
            "invalid_request",
        ),
        ("token: binary garbage", "/token", form, vec![0xff, 0xfe, 0x00, 0x01], 400, "invalid_request"),
        ("token: oversized", "/token", form, format!("grant_type={huge}").into_bytes(), 413, "invalid_request"),
        ("token: empty", "/token", form, vec![], 400, "invalid_request"),
        ("register: not JSON", "/register", "application/json", b"{not json".to_vec(), 400, "invalid_client_metadata"),
        ("register: form body", "/register", form, b"redirect_uris=x".to_vec(), 400, "invalid_request"),
        (
            "register: oversized",
            "/register",
            "application/json",
            format!("{{\"client_name\":\"{huge}\"}}").into_bytes(),
            413,
            "invalid_request",
        ),
        (
            "register: deep nesting",
            "/register",
            "application/json",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            400,
            "invalid_client_metadata",
        ),
        ("revoke: garbage", "/revoke", form, b"%%%".to_vec(), 401, "invalid_client"),
        ("introspect: garbage", "/introspect", form, b"token=%zz".to_vec(), 401, "invalid_client"),
        (
            "introspect: JSON body",
            "/introspect",
            "application/json",
            br#"{"token":"x"}"#.to_vec(),
            400,
            "invalid_request",
        ),
    ];
    for (case, path, content_type, body, status, error) in cases {
        let mut request = app.api.post(app.url(path)).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        expect_error(request.send().await.unwrap(), status, error, case).await;
    }
    // Wrong methods and unknown paths: JSON, never HTML, never 500.
    for (method, path, status) in [
        ("GET", "/token", 405),
        ("GET", "/introspect", 405),
        ("PUT", "/authorize", 405),
        ("GET", "/nope", 404),
        ("GET", "/.well-known/openid-configuration", 404),
        ("GET", "/.well-known/oauth-authorization-server/extra", 404),
    ] {
        let response = app.api.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert!(
            response.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
            "{method} {path}"
        );
    }
}
