//! The threat suite: one test per threat, named after it, citing RFC 9700 (OAuth 2.0
//! Security Best Current Practice) or the MCP security best practices. The README's security
//! section maps each threat to its test here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use serde_json::{Value, json};

/// What `/authorize` shows `browser` for `client` and `scope`: 200 (the page) or 302 (upstream).
async fn authorize_status(
    app: &TestApp,
    browser: &Browser,
    client: &TestClient,
    extra: &[(&str, Option<&str>)],
) -> u16 {
    browser.get(&app.authorize_url(client, &Pkce::new(), extra)).await.status().as_u16()
}

/// MCP security best practices, "Confused Deputy Problem": consent per user agent and per
/// client, remembered in a signed cookie; anything new is asked again.
#[tokio::test]
async fn mcp_confused_deputy_consent_is_remembered_only_for_the_same_browser_client_and_scopes() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let other = app.register_client("none").await;
    let browser = app.browser();
    let pkce = Pkce::new();
    let code = app.authorize(&browser, &app.authorize_url(&client, &pkce, &[]), "amy").await["code"].clone();
    assert_eq!(app.exchange_code(&client, &code, &pkce.verifier).await.status(), 200, "a client in use is kept");

    assert_eq!(authorize_status(&app, &browser, &client, &[]).await, 302, "remembered: straight upstream");
    assert_eq!(authorize_status(&app, &browser, &other, &[]).await, 200, "another client is asked");
    assert_eq!(
        authorize_status(&app, &browser, &client, &[("scope", Some("files:read files:write"))]).await,
        200,
        "more scope is asked"
    );
    assert_eq!(
        authorize_status(&app, &browser, &client, &[("prompt", Some("consent"))]).await,
        200,
        "prompt=consent asks"
    );
    assert_eq!(
        authorize_status(
            &app,
            &browser,
            &client,
            &[("resource", Some(OTHER_RESOURCE_URI)), ("scope", Some("calendar:read"))]
        )
        .await,
        200,
        "another resource is asked"
    );
    assert_eq!(authorize_status(&app, &app.browser(), &client, &[]).await, 200, "another browser is asked");
    // A forged or stale cookie is worthless.
    let forged = app.browser();
    forged.client.get(app.url("/healthz")).send().await.unwrap();
    let request = forged
        .client
        .get(app.authorize_url(&client, &Pkce::new(), &[]))
        .header("cookie", format!("tether-consent=c1.k.{}.AAAA", "W3siYyI6IngifV0"))
        .send()
        .await
        .unwrap();
    assert_eq!(request.status(), 200);
    app.clock.advance(604_801);
    assert_eq!(authorize_status(&app, &browser, &client, &[]).await, 200, "the approval expired");
}

#[tokio::test]
async fn mcp_consent_cookies_are_host_prefixed_secure_and_httponly_over_https() {
    let app = TestApp::spawn_with(Backend::Memory, Options { https_issuer: true, ..Options::default() }).await;
    let client = app.register_client("none").await;
    let page = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cookie.starts_with("__Host-tether-binding="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "__Host- cookies have no Domain: {cookie}");
    // Plain-http development: the documented non-prefixed variant, not Secure.
    let dev = TestApp::spawn(Backend::Memory).await;
    let client = dev.register_client("none").await;
    let page = dev.browser().get(&dev.authorize_url(&client, &Pkce::new(), &[])).await;
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("tether-binding=") && !cookie.contains("Secure"), "{cookie}");
}

/// RFC 9700 §4.14.2: refresh token rotation with replay detection.
#[tokio::test]
async fn rfc9700_4_14_2_refresh_token_reuse_after_rotation_revokes_the_whole_grant() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let first = app.tokens_for(&client, "bea").await;
    let old = first["refresh_token"].as_str().unwrap();
    let second: Value = app.refresh(&client, old).await.json().await.unwrap();
    app.clock.advance(31); // past the 30 s grace window
    let reuse = app.refresh(&client, old).await;
    let body = expect_error(reuse, 400, "invalid_grant", "reuse after the grace window").await;
    assert!(body["error_description"].as_str().unwrap().contains("revoked"), "{body}");
    // The attacker and the legitimate client alike lose the family.
    expect_error(
        app.refresh(&client, second["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
        "newest token",
    )
    .await;
    assert_eq!(app.introspect(second["access_token"].as_str().unwrap()).await, json!({"active": false}));
}

/// RFC 9700 §4.14.2 with real clients: retries and parallel refreshes within the grace
/// window get one rotation, the same pair for everyone, on any instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rfc9700_4_14_2_racing_refreshes_across_instances_get_one_rotation_and_the_same_pair() {
    let cluster = TestCluster::spawn(3, Options::default()).await;
    let first = &cluster.apps[0];
    let client = first.register_client("none").await;
    let old = first.tokens_for(&client, "cid").await["refresh_token"].as_str().unwrap().to_owned();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24 {
        let app = &cluster.apps[i % 3];
        let form = [
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", old.clone()),
            ("client_id", client.client_id.clone()),
        ];
        let request = app.api.post(app.url("/token")).form(&form);
        calls.spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        });
    }
    let answers = calls.join_all().await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let pairs: std::collections::HashSet<(String, String)> = answers
        .iter()
        .map(|(_, b)| (b["access_token"].as_str().unwrap().to_owned(), b["refresh_token"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(pairs.len(), 1, "one rotation, one pair for all 24 requests");
    let (access, refresh) = pairs.into_iter().next().unwrap();
    assert_eq!(first.introspect(&access).await["active"], true);
    assert_eq!(first.refresh(&client, &refresh).await.status(), 200, "the successor works");
}

fn with(extra: &str) -> Options {
    Options { extra: extra.to_owned(), ..Options::default() }
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers().get("retry-after").expect("429 without Retry-After").to_str().unwrap().parse().unwrap()
}

fn sdk_registration() -> Value {
    json!({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"})
}

/// RFC 9700 §4.17 (abuse of the authorization server's endpoints), MCP 2025-11-25
/// "Client Registration": rates per client address on /register, /authorize and
/// /token, 429 with `Retry-After`, an OAuth-shaped body a browser client can read (CORS).
#[tokio::test]
async fn abuse_endpoints_are_rate_limited_per_client_address_with_retry_after() {
    let app = TestApp::spawn_with(
        Backend::Memory,
        with("[limits]\nregister_per_minute = 2\nauthorize_per_minute = 2\ntoken_per_minute = 3"),
    )
    .await;
    let client = app.register_client("none").await;
    assert_eq!(app.register(&sdk_registration()).await.status(), 201);
    let third = app
        .api
        .post(app.url("/register"))
        .header("origin", "https://web.example")
        .json(&sdk_registration())
        .send()
        .await
        .unwrap();
    let wait = retry_after(&third);
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(third.headers()["access-control-allow-origin"], "*", "a browser client can read the 429");
    let body = expect_error(third, 429, "temporarily_unavailable", "third registration").await;
    assert!(body["error_description"].as_str().unwrap().contains("too many"), "{body}");

    // /token counts every call, failed ones too (guessing codes costs budget).
    for _ in 0..3 {
        let r = app.token(&client, &[("grant_type", "authorization_code"), ("code", "guess")]).await;
        assert_eq!(r.status(), 400);
    }
    let over = app.token(&client, &[("grant_type", "authorization_code"), ("code", "guess")]).await;
    assert!(retry_after(&over) >= 1);
    expect_error(over, 429, "temporarily_unavailable", "fourth token call").await;

    // /authorize is a browser page: the 429 is a page too.
    let browser = app.browser();
    for _ in 0..2 {
        assert_eq!(browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.status(), 200);
    }
    let page = browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    assert_eq!(page.status(), 429);
    assert!(retry_after(&page) >= 1);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("Too many authorization requests"));
    // Other endpoints are not affected.
    assert_eq!(app.api.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().status(), 200);
}

/// The same limits behind a TLS-terminating proxy: `X-Forwarded-For` names the client only
/// when the request comes from a configured trusted proxy; anyone else cannot pick the
/// address they are counted under.
#[tokio::test]
async fn abuse_forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let register_from = |app: &TestApp, ip: &'static str| {
        app.api.post(app.url("/register")).header("x-forwarded-for", ip).json(&sdk_registration()).send()
    };
    let options =
        Options { server: "trusted_proxies = [\"127.0.0.0/8\"]".into(), ..with("[limits]\nregister_per_minute = 1") };
    let behind = TestApp::spawn_with(Backend::Memory, options).await;
    assert_eq!(register_from(&behind, "198.51.100.1").await.unwrap().status(), 201);
    assert_eq!(register_from(&behind, "198.51.100.2").await.unwrap().status(), 201, "another client behind the proxy");
    assert_eq!(register_from(&behind, "198.51.100.1").await.unwrap().status(), 429, "same client again");

    let exposed = TestApp::spawn_with(Backend::Memory, with("[limits]\nregister_per_minute = 1")).await;
    assert_eq!(register_from(&exposed, "198.51.100.1").await.unwrap().status(), 201);
    assert_eq!(
        register_from(&exposed, "198.51.100.2").await.unwrap().status(),
        429,
        "a spoofed X-Forwarded-For from an untrusted peer is ignored"
    );
}

/// Introspection is limited per MCP server (resource), after it authenticates: one noisy
/// server cannot spend another's budget.
#[tokio::test]
async fn abuse_introspection_is_rate_limited_per_resource() {
    let app = TestApp::spawn_with(Backend::Memory, with("[limits]\nintrospect_per_second = 5")).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, "some-token").await.status().as_u16());
    }
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "30 calls never hit 5/s: {statuses:?}");
    let over = loop {
        let r = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, "some-token").await;
        if r.status() == 429 {
            break r;
        }
    };
    assert!(retry_after(&over) >= 1);
    expect_error(over, 429, "temporarily_unavailable", "introspection over its rate").await;
    let other = app.introspect_as(OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, "some-token").await;
    assert_eq!(other.status(), 200, "another resource has its own budget");
    // Failing authentication is answered 401, not counted against the resource.
    assert_eq!(app.introspect_as(RESOURCE_ID, "wrong", "t").await.status(), 401);
}

/// MCP 2025-11-25 "Client Registration": caps on dynamic registration hold across
/// replicas (counted in Redis); unused clients lapse and free their place.
#[tokio::test]
async fn abuse_dynamic_registration_is_capped_in_total_and_per_hour() {
    let app = TestApp::spawn_with(Backend::Memory, with("[limits]\nmax_clients = 2")).await;
    app.register_client("none").await;
    app.register_client("none").await;
    let full = app.register(&sdk_registration()).await;
    assert!(retry_after(&full) >= 1);
    expect_error(full, 429, "temporarily_unavailable", "over max_clients").await;
    app.clock.advance(86_401); // registration.unused_client_ttl_secs: never-used clients lapse
    assert_eq!(app.register(&sdk_registration()).await.status(), 201, "lapsed clients free their place");

    let cluster = TestCluster::spawn(2, with("[limits]\nregistrations_per_hour = 3\nmax_clients = 0")).await;
    let mut created = 0;
    for i in 0..3 {
        let r = cluster.apps[i % 2].register(&sdk_registration()).await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        created += usize::from(body["client_id"].is_string());
    }
    assert_eq!(created, 3);
    let over = cluster.apps[1].register(&sdk_registration()).await;
    let wait = retry_after(&over);
    assert!((1..=3600).contains(&wait), "until the next hour: {wait}");
    expect_error(over, 429, "temporarily_unavailable", "the cap holds across instances").await;
    // A deleted client frees its place under max_clients (RFC 7592 delete).
    let capped = TestCluster::spawn(2, with("[limits]\nmax_clients = 1")).await;
    let r: Value = capped.apps[0].register(&sdk_registration()).await.json().await.unwrap();
    assert_eq!(capped.apps[1].register(&sdk_registration()).await.status(), 429);
    let delete = capped.apps[1]
        .api
        .delete(r["registration_client_uri"].as_str().unwrap().replace(&capped.apps[1].issuer, &capped.apps[1].base))
        .bearer_auth(r["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(capped.apps[1].register(&sdk_registration()).await.status(), 201);
}

#[test]
fn abuse_trusted_proxies_must_be_addresses_or_networks() {
    let errors = config_errors("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.internal\"]\n");
    assert!(errors.contains("server.trusted_proxies") && errors.contains("proxy.internal"), "{errors}");
    assert_eq!(config_errors("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\n"), "");
}

/// Sends raw bytes to the app and returns the status code (0 when the connection closed
/// without an answer) and the response head.
async fn raw(app: &TestApp, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    // The server may answer and close before it read everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read_head = async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read_head).await.expect("no answer within 20 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Oversized inputs (RFC 9110 §15.5.14/§15.5.15, RFC 6585 §5): every endpoint refuses a body,
/// request target or header section larger than OAuth needs with 413, 414 or 431 and a
/// clear message, whatever the declared length, and the next request is served normally.
#[tokio::test]
async fn dos_oversized_inputs_are_refused_with_413_414_or_431_never_500() {
    let app = TestApp::spawn(Backend::Memory).await;
    let big = "a".repeat(2_000_000);
    for path in ["/authorize", "/consent", "/token", "/introspect", "/revoke", "/register"] {
        let (content_type, body) = if path == "/register" {
            ("application/json", format!("{{\"client_name\": \"{big}\"}}"))
        } else {
            ("application/x-www-form-urlencoded", format!("state={big}"))
        };
        let response =
            app.api.post(app.url(path)).header("content-type", content_type).body(body).send().await.unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains("too large"), "{path}: {text}");
        // A declared length past the limit is refused before the body is read.
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: 10000000000\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(raw(&app, head.as_bytes()).await.0, 413, "{path}: declared length");
    }
    // Chunked, no declared length: cut off at the limit.
    let chunk = "a".repeat(60_000);
    let chunked = format!(
        "POST /token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_eq!(raw(&app, chunked.as_bytes()).await.0, 413, "chunked body");

    let long_uri = format!("/authorize?state={}", "s".repeat(10_000));
    let response = app.api.get(app.url(&long_uri)).send().await.unwrap();
    expect_error(response, 414, "invalid_request", "long request target").await;
    let response = app.api.get(app.url("/healthz")).header("x-padding", "p".repeat(40_000)).send().await.unwrap();
    expect_error(response, 431, "invalid_request", "large header section").await;
    let cookie = format!("tether-consent={}", "c".repeat(40_000));
    let response = app.api.get(app.url("/authorize")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(response.status(), 431, "oversized cookie");
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, _) =
        raw(&app, format!("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{many}\r\n").as_bytes()).await;
    assert_eq!(status, 431, "too many headers");
    let (status, _) =
        raw(&app, format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "h".repeat(300_000)).as_bytes())
            .await;
    assert_eq!(status, 431, "a header past the decoder's buffer");
    // Deep JSON nesting is a metadata error, not a stack overflow.
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let response = app
        .api
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(format!("{{\"redirect_uris\": {deep}}}"))
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "invalid_client_metadata", "deeply nested JSON").await;
    assert_eq!(app.api.get(app.url("/healthz")).send().await.unwrap().status(), 200, "still serving");
}

/// Slow clients (slowloris): a request whose headers never finish is dropped after
/// `server.client_timeout_secs`, freeing its connection.
#[tokio::test]
async fn dos_a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let options = Options { server: "client_timeout_secs = 1".into(), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Memory, options).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
    let mut out = Vec::new();
    // Generous bound: the point is that the server ends it, not how fast.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the server kept a half-sent request open for 30 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Redirect-based flow threats (RFC 9700 §4), one test each.

/// A code for `client`, from a full browser flow in `browser`, and its PKCE pair.
async fn code_in(app: &TestApp, browser: &Browser, client: &TestClient) -> (String, Pkce) {
    let pkce = Pkce::new();
    let result = app.authorize(browser, &app.authorize_url(client, &pkce, &[]), "victim").await;
    (result["code"].clone(), pkce)
}

/// RFC 9700 §4.5: an attacker who obtained a victim's code cannot redeem it in their own
/// session: PKCE binds it to the victim's verifier, and it is bound to the victim's client.
#[tokio::test]
async fn rfc9700_4_5_authorization_code_injection_fails_without_the_verifier_and_client() {
    let app = TestApp::spawn(Backend::Memory).await;
    let victim = app.register_client("none").await;
    let attacker = app.register_client("none").await;
    let (code, pkce) = code_in(&app, &app.browser(), &victim).await;
    let attacker_pkce = Pkce::new();
    expect_error(app.exchange_code(&attacker, &code, &pkce.verifier).await, 400, "invalid_grant", "another client")
        .await;
    let (code, _) = code_in(&app, &app.browser(), &victim).await;
    let injected = app.exchange_code(&victim, &code, &attacker_pkce.verifier).await;
    expect_error(injected, 400, "invalid_grant", "the attacker's own verifier").await;
}

/// RFC 9700 §4.8: PKCE cannot be downgraded: `/authorize` requires an S256 challenge (no
/// `plain`, no omission), and a code issued with one is only redeemed with its verifier.
#[tokio::test]
async fn rfc9700_4_8_pkce_downgrade_is_refused_at_authorize_and_token() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    for (case, overrides) in [
        ("no challenge", vec![("code_challenge", None), ("code_challenge_method", None)]),
        ("plain", vec![("code_challenge_method", Some("plain"))]),
        ("no method", vec![("code_challenge_method", None)]),
    ] {
        let response = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &overrides)).await;
        let q = query(&location(&response));
        assert_eq!(q["error"], "invalid_request", "{case}");
        assert!(!q.contains_key("code"), "{case}");
    }
    let (code, _) = code_in(&app, &app.browser(), &client).await;
    let without_verifier = app
        .token(&client, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CLIENT_REDIRECT)])
        .await;
    assert_eq!(without_verifier.status(), 400, "a code issued with a challenge needs its verifier");
}

/// RFC 6749 §4.1.2 (and OAuth 2.1): a code presented twice is refused, and the tokens issued
/// from it are revoked: a replayed code signals that it leaked.
#[tokio::test]
async fn rfc6749_4_1_2_authorization_code_replay_revokes_the_tokens_it_issued() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let (code, pkce) = code_in(&app, &app.browser(), &client).await;
    let tokens: Value = app.exchange_code(&client, &code, &pkce.verifier).await.json().await.unwrap();
    expect_error(app.exchange_code(&client, &code, &pkce.verifier).await, 400, "invalid_grant", "replay").await;
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await, json!({"active": false}));
    let refresh = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await;
    expect_error(refresh, 400, "invalid_grant", "refresh token of the replayed code").await;
}

/// RFC 9700 §4.11.2: Tether is not an open redirector. An unknown client or an unregistered
/// redirect URI gets a page, never a redirect, whatever else is wrong with the request.
#[tokio::test]
async fn rfc9700_4_11_2_open_redirect_via_redirect_uri_shows_a_page_instead() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let evil = Some("https://evil.example/steal");
    for (case, overrides) in [
        ("unregistered redirect", vec![("redirect_uri", evil)]),
        ("unregistered redirect with a bad request", vec![("redirect_uri", evil), ("response_type", Some("token"))]),
        ("unknown client", vec![("client_id", Some("made-up")), ("redirect_uri", evil)]),
        ("scheme that runs code", vec![("redirect_uri", Some("javascript:alert(1)"))]),
    ] {
        let response = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &overrides)).await;
        assert_eq!(response.status(), 400, "{case}");
        assert!(response.headers().get("location").is_none(), "{case}: redirected");
    }
    // Registration refuses targets that run code or leave loopback over http.
    for uri in ["javascript:alert(1)", "http://evil.example/cb", "data:text/html,x"] {
        let response = app.register(&json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"})).await;
        expect_error(response, 400, "invalid_redirect_uri", uri).await;
    }
}

/// RFC 9700 §4.1 and §4.1.3: redirect URIs match by exact string; a presented URI that merely
/// starts like the registered one (extra path, query, userinfo, other host) does not match.
#[tokio::test]
async fn rfc9700_4_1_3_a_redirect_uri_with_extra_path_or_parts_is_not_a_match() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response =
        app.register(&json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"})).await;
    let body: Value = response.json().await.unwrap();
    let client = TestClient {
        client_id: body["client_id"].as_str().unwrap().to_owned(),
        client_secret: None,
        redirect_uri: "https://app.example/cb".to_owned(),
    };
    assert_eq!(app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[])).await.status(), 200);
    for presented in [
        "https://app.example/cb/extra",
        "https://app.example/cb/../admin",
        "https://app.example/cb?next=https://evil.example",
        "https://app.example/cb#frag",
        "https://app.example/CB",
        "https://app.example:8443/cb",
        "https://app.example.evil.example/cb",
        "https://app.example@evil.example/cb",
        "http://app.example/cb",
        "https://app.example/c%62",
    ] {
        let response =
            app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[("redirect_uri", Some(presented))])).await;
        assert_eq!(response.status(), 400, "{presented} matched");
        assert!(response.headers().get("location").is_none(), "{presented}");
    }
}

/// RFC 8252 §7.3 and RFC 9700 §4.1.3: for loopback redirect URIs only the port may differ
/// (native apps pick one at run time); host, scheme, path and query still match exactly.
#[tokio::test]
async fn rfc8252_7_3_loopback_redirects_may_change_the_port_and_nothing_else() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await; // http://127.0.0.1/callback
    let app = &app;
    let status = |uri: &'static str| {
        let url = app.authorize_url(&client, &Pkce::new(), &[("redirect_uri", Some(uri))]);
        async move { app.browser().get(&url).await.status().as_u16() }
    };
    assert_eq!(status("http://127.0.0.1:49152/callback").await, 200, "any port");
    assert_eq!(status("http://127.0.0.1:1/callback").await, 200, "any port");
    for refused in [
        "http://localhost:49152/callback",
        "http://[::1]:49152/callback",
        "https://127.0.0.1:49152/callback",
        "http://127.0.0.1:49152/callback/x",
        "http://127.0.0.1:49152/callback?x=1",
        "http://user@127.0.0.1:49152/callback",
        "http://127.0.0.2:49152/callback",
    ] {
        assert_eq!(status(refused).await, 400, "{refused}");
    }
}

/// RFC 9700 §4.4 (mix-up), RFC 9207: every authorization response Tether sends names its
/// issuer, errors included; and Tether refuses an upstream response naming another issuer
/// than the provider the flow was sent to, or lacking the `iss` the provider advertises.
#[tokio::test]
async fn rfc9700_4_4_mix_up_responses_name_their_issuer_both_ways() {
    let app = TestApp::spawn_with(Backend::Memory, Options { kind: Kind::Oidc, ..Options::default() }).await;
    let metadata = app.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["authorization_response_iss_parameter_supported"], true);
    let client = app.register_client("none").await;
    let denied = app.browser().get(&app.authorize_url(&client, &Pkce::new(), &[("scope", Some("nope"))])).await;
    assert_eq!(query(&location(&denied))["iss"], app.issuer, "errors carry iss");
    let (code_answer, _) = {
        let pkce = Pkce::new();
        (app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "mia").await, pkce)
    };
    assert_eq!(code_answer["iss"], app.issuer);

    // Upstream: the stand-in is an OpenID provider that sends `iss` (RFC 9207).
    for (case, tamper) in [("another issuer", Some("https://evil.example")), ("iss removed", None)] {
        let browser = app.browser();
        let upstream = app.go_upstream(&browser, &app.authorize_url(&client, &Pkce::new(), &[])).await;
        let callback = location(&browser.upstream_login(&upstream, "mia", "approve").await);
        let mut url = url::Url::parse(&callback).unwrap();
        let kept: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != "iss").collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
        if let Some(iss) = tamper {
            url.query_pairs_mut().append_pair("iss", iss);
        }
        let answer = browser.get(url.as_str()).await;
        let q = query(&location(&answer));
        assert_eq!(q["error"], "server_error", "{case}: {q:?}");
        assert!(!q.contains_key("code"), "{case}: a code was issued");
    }
}

/// RFC 9700 §4.7 (CSRF) and MCP "Confused Deputy Problem": the consent POST needs the
/// pending authorization's own id from the browser that opened it: without the binding
/// cookie, with another pending authorization's id, or replayed, it is refused; and the
/// upstream callback completes only in the browser that consented.
#[tokio::test]
async fn rfc9700_4_7_csrf_on_consent_and_callback_is_refused() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let (victim, attacker) = (app.browser(), app.browser());
    let victim_page = victim.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.text().await.unwrap();
    let attacker_page = attacker.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.text().await.unwrap();
    let consent = app.url("/consent");
    // The attacker's own consent id, submitted from the victim's browser (a cross-site form).
    let crossed = victim.consent(&consent, &consent_id(&attacker_page), "approve").await;
    assert_eq!(crossed.status(), 403, "another browser's pending authorization");
    let no_cookie = Browser::new().consent(&consent, &consent_id(&victim_page), "approve").await;
    assert_eq!(no_cookie.status(), 403, "no binding cookie");
    let missing = victim.client.post(&consent).form(&[("decision", "approve")]).send().await.unwrap();
    assert_eq!(missing.status(), 400, "no consent id");
    // Both ids were spent by the refused attempts: nothing can be replayed.
    assert_eq!(attacker.consent(&consent, &consent_id(&attacker_page), "approve").await.status(), 400);

    // The callback: the attacker completes the upstream login and feeds the victim the link.
    let upstream = app.go_upstream(&attacker, &app.authorize_url(&client, &Pkce::new(), &[])).await;
    let callback = location(&attacker.upstream_login(&upstream, "mallory", "approve").await);
    let fed = victim.get(&callback).await;
    assert_eq!(fed.status(), 403, "completed in another browser");
    assert!(fed.headers().get("location").is_none());
}

/// MCP "Confused Deputy Problem": an approval covers one client; a client registered later
/// (even with the same name and redirect URI) is asked, in the same browser, right after.
/// (A client whose redirect URIs or name change is asked again: `oauth::consent` unit tests.)
#[tokio::test]
async fn mcp_confused_deputy_a_new_client_is_asked_even_after_the_user_approved_another() {
    let app = TestApp::spawn(Backend::Memory).await;
    let trusted = app.register_client("none").await;
    let browser = app.browser();
    app.authorize(&browser, &app.authorize_url(&trusted, &Pkce::new(), &[]), "ann").await;
    assert_eq!(authorize_status(&app, &browser, &trusted, &[]).await, 302, "remembered for the approved client");
    let lookalike = app.register_client("none").await;
    let response = browser.get(&app.authorize_url(&lookalike, &Pkce::new(), &[])).await;
    assert_eq!(response.status(), 200, "the new client gets the consent page");
    assert!(response.text().await.unwrap().contains("Test Client"));
}

/// RFC 9700 §4.7 and §2.1: the state Tether sends upstream is single use; replaying the
/// provider's answer (browser back button, a leaked URL) issues nothing.
#[tokio::test]
async fn rfc9700_4_7_upstream_state_is_single_use() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let browser = app.browser();
    let upstream = app.go_upstream(&browser, &app.authorize_url(&client, &Pkce::new(), &[])).await;
    let callback = location(&browser.upstream_login(&upstream, "sam", "approve").await);
    let first = browser.get(&callback).await;
    assert!(query(&location(&first)).contains_key("code"));
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), 400);
    assert!(replay.headers().get("location").is_none(), "no second code");
    let forged = browser.get(&app.url("/callback?code=x&state=guessed")).await;
    assert_eq!(forged.status(), 400, "an unknown state");
}

/// RFC 9700 §4.10.2 and MCP "Token Audience Binding": an access token is for one MCP server;
/// another server introspecting it learns only `{"active": false}`, and a refresh cannot move
/// the grant to another server.
#[tokio::test]
async fn rfc9700_4_10_2_an_access_token_for_another_audience_is_inactive() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "ada").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["aud"], RESOURCE_URI);
    let other = app.introspect_as(OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, access).await;
    assert_eq!(other.json::<Value>().await.unwrap(), json!({"active": false}));
    let moved = app
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("resource", OTHER_RESOURCE_URI),
            ],
        )
        .await;
    expect_error(moved, 400, "invalid_target", "refresh toward another resource").await;
}

/// MCP security best practices, "Token Passthrough": the client never receives an upstream
/// credential, Tether's tokens are worthless upstream, and upstream tokens are worthless at
/// Tether.
#[tokio::test]
async fn mcp_token_passthrough_tokens_never_cross_the_boundary() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let result = app.authorize(&app.browser(), &app.authorize_url(&client, &pkce, &[]), "zoe").await;
    let issued = app.exchange_code(&client, &result["code"], &pkce.verifier).await.text().await.unwrap();
    let tokens: Value = serde_json::from_str(&issued).unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let upstream = app.introspect(access).await["upstream"]["access_token"].as_str().unwrap().to_owned();
    let refreshed = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.text().await.unwrap();
    for (what, text) in [("token response", &issued), ("refresh response", &refreshed)] {
        assert!(!text.contains(&upstream), "{what} carries the upstream token");
        assert!(!text.contains("dev_rt_"), "{what} carries an upstream refresh token");
    }
    assert!(app.upstream.accepts(&upstream), "the upstream token is live upstream");
    assert!(!app.upstream.accepts(access), "Tether's token is not accepted upstream");
    assert_eq!(app.introspect(&upstream).await, json!({"active": false}), "an upstream token is not Tether's");
    let swapped = app.refresh(&client, &upstream).await;
    expect_error(swapped, 400, "invalid_grant", "an upstream token as refresh token").await;
}

/// RFC 8725 §2.1 and §3.1, RFC 9068 §4: the algorithm is pinned (ES256), `typ` must be
/// `at+jwt`, the `kid` must name a published key: `none`, HS256 keyed with the public key,
/// RS256, a missing or unknown `kid`, another key, and edited claims are all inactive.
#[tokio::test]
async fn rfc8725_jwt_alg_confusion_and_forged_headers_are_inactive() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let genuine = app.tokens_for(&client, "eve").await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&genuine).await["active"], true);
    let parts: Vec<&str> = genuine.split('.').collect();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&genuine);
    let encode = |v: &Value| B64.encode(serde_json::to_vec(v).unwrap());
    let jwks = app.get_json("/.well-known/jwks.json").await;
    let public_key = serde_json::to_string(&jwks["keys"][0]).unwrap();

    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(public_key.as_bytes())).unwrap()
    };
    let other_key = {
        let spec = tether::crypto::signing::SigningKeys::generate_spec(&kid).unwrap();
        let keys = tether::crypto::signing::SigningKeys::parse(&spec).unwrap();
        keys.sign(&claims).unwrap()
    };
    let mut edited = claims.clone();
    edited["scope"] = json!("files:read files:write");
    let forged: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{}.", encode(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})), parts[1])),
        ("HS256 keyed with the public JWK", hs256),
        (
            "RS256 header",
            format!("{}.{}.{}", encode(&json!({"alg": "RS256", "typ": "at+jwt", "kid": kid})), parts[1], parts[2]),
        ),
        ("no kid", format!("{}.{}.{}", encode(&json!({"alg": "ES256", "typ": "at+jwt"})), parts[1], parts[2])),
        (
            "unknown kid",
            format!("{}.{}.{}", encode(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "x"})), parts[1], parts[2]),
        ),
        (
            "typ JWT",
            format!("{}.{}.{}", encode(&json!({"alg": "ES256", "typ": "JWT", "kid": kid})), parts[1], parts[2]),
        ),
        ("signed by another key with the same kid", other_key),
        ("edited claims", format!("{}.{}.{}", parts[0], encode(&edited), parts[2])),
        ("signature removed", format!("{}.{}.", parts[0], parts[1])),
    ];
    for (case, token) in forged {
        assert_eq!(app.introspect(&token).await, json!({"active": false}), "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// Records at rest (AEAD, RFC 5116 §2.1 associated data) and what reaches HTTP headers.

/// The sealed upstream tokens (`up`) behind `access_token` (its grant's connection), read or
/// written raw.
async fn grant_field(app: &TestApp, access_token: &str, replace: Option<&[u8]>) -> Vec<u8> {
    let gid = jwt_claims(access_token)["gid"].as_str().unwrap().to_owned();
    let client = ::redis::Client::open(app.redis.as_ref().unwrap().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = common::link_key(&gid);
    if let Some(bytes) = replace {
        let _: () = ::redis::cmd("HSET").arg(&key).arg("up").arg(bytes).query_async(&mut conn).await.unwrap();
    }
    ::redis::cmd("HGET").arg(&key).arg("up").query_async(&mut conn).await.unwrap()
}

/// A sealed record altered in the store (one bit anywhere) does not open: the grant reads as
/// inactive, never as a 500, never as garbage handed to an MCP server.
#[tokio::test]
async fn aead_a_tampered_sealed_record_is_refused() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let access = app.tokens_for(&client, "tim").await["access_token"].as_str().unwrap().to_owned();
    let sealed = grant_field(&app, &access, None).await;
    for position in [sealed.len() - 1, sealed.len() / 2, 1] {
        let mut tampered = sealed.clone();
        tampered[position] ^= 0x20;
        grant_field(&app, &access, Some(&tampered)).await;
        let answer = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &access).await;
        assert_eq!(answer.status(), 200, "byte {position}");
        assert_eq!(answer.json::<Value>().await.unwrap(), json!({"active": false}), "byte {position}");
    }
    grant_field(&app, &access, Some(&sealed)).await;
    assert_eq!(app.introspect(&access).await["active"], true, "the original still opens");
}

/// A sealed record copied into another user's connection does not open there: the associated
/// data binds it to its connection, provider and upstream subject.
#[tokio::test]
async fn aead_ciphertext_moved_between_grants_does_not_open() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let rich = app.tokens_for(&client, "rich").await["access_token"].as_str().unwrap().to_owned();
    let thief = app.tokens_for(&client, "thief").await["access_token"].as_str().unwrap().to_owned();
    let rich_upstream = app.introspect(&rich).await["upstream"]["access_token"].as_str().unwrap().to_owned();
    let stolen = grant_field(&app, &rich, None).await;
    grant_field(&app, &thief, Some(&stolen)).await;
    let answer = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &thief).await.text().await.unwrap();
    assert!(!answer.contains(&rich_upstream), "the moved credential was handed out: {answer}");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap(), json!({"active": false}));
    assert_eq!(app.introspect(&rich).await["upstream"]["access_token"], rich_upstream.as_str());
}

/// RFC 9110 §5.5 (field values), RFC 6265 §4.1: input carrying CR/LF, `;` or quotes cannot
/// add headers or cookies: `state` is percent-encoded in the Location it returns in, redirect
/// URIs with control characters are refused, and every cookie Tether sets is its own token.
#[tokio::test]
async fn rfc9110_header_and_cookie_injection_stays_inside_its_field() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = app.register_client("none").await;
    let evil_state = "s\r\nSet-Cookie: evil=1\r\nX-Injected: 1; Path=/";
    let response = app
        .browser()
        .get(&app.authorize_url(&client, &Pkce::new(), &[("state", Some(evil_state)), ("scope", Some("nope"))]))
        .await;
    let headers = response.headers().clone();
    assert!(headers.get("x-injected").is_none());
    assert!(!headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().contains("evil")), "{headers:?}");
    let target = location(&response);
    assert!(!target.contains('\r') && !target.contains('\n') && !target.contains(' '), "{target}");
    assert_eq!(query(&target)["state"], evil_state, "returned intact, encoded");

    for uri in ["http://127.0.0.1/cb\r\nX-Injected: 1", "http://127.0.0.1/c b", "http://127.0.0.1/cb\t"] {
        let response = app.register(&json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"})).await;
        expect_error(response, 400, "invalid_redirect_uri", "control characters").await;
    }
    let smuggled = app
        .browser()
        .get(&app.authorize_url(&client, &Pkce::new(), &[("redirect_uri", Some("http://127.0.0.1:5/call\nback"))]))
        .await;
    assert_eq!(smuggled.status(), 400, "a line break the URL parser would drop");

    // A full flow with a hostile client name: every Set-Cookie value is Tether's own token.
    let named = app
        .register(&json!({
            "client_name": "x\"; Domain=evil.example; a=b",
            "redirect_uris": [CLIENT_REDIRECT],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    assert_eq!(named.status(), 201, "names are free text (control characters aside), escaped where shown");
    let named: Value = named.json().await.unwrap();
    let named = TestClient {
        client_id: named["client_id"].as_str().unwrap().to_owned(),
        client_secret: None,
        redirect_uri: CLIENT_REDIRECT.to_owned(),
    };
    let browser = app.browser();
    let page = browser.get(&app.authorize_url(&named, &Pkce::new(), &[("state", Some("a;b=c"))])).await;
    let consent = consent_id(&page.text().await.unwrap());
    let approved = browser.consent(&app.url("/consent"), &consent, "approve").await;
    for cookie in approved.headers().get_all("set-cookie") {
        let (name_value, _) = cookie.to_str().unwrap().split_once(';').unwrap();
        let (_, value) = name_value.split_once('=').unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{value}");
    }
}

/// RFC 9700 §4.16 (clickjacking) and §4.2.4 (Referer leakage): every page Tether shows, and
/// every browser redirect, forbids framing, sends no referrer, is not cached and runs no script.
#[tokio::test]
async fn rfc9700_4_16_pages_cannot_be_framed_leak_no_referrer_and_run_no_script() {
    let app = TestApp::spawn_with(Backend::Memory, with("[limits]\nauthorize_per_minute = 4")).await;
    let client = app.register_client("none").await;
    let browser = app.browser();
    let consent = browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    let to_upstream =
        browser.consent(&app.url("/consent"), &consent_id(&consent.text().await.unwrap()), "approve").await;
    let consent = browser.get(&app.authorize_url(&client, &Pkce::new(), &[("prompt", Some("consent"))])).await;
    let error = browser.get(&app.authorize_url(&client, &Pkce::new(), &[("client_id", Some("nobody"))])).await;
    let callback = browser.get(&app.url("/callback?state=unknown&code=x")).await;
    let too_large = browser
        .client
        .post(app.url("/consent"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a".repeat(100_000))
        .send()
        .await
        .unwrap();
    let throttled = loop {
        let r = browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
        if r.status() == 429 {
            break r;
        }
    };
    for (case, response, status) in [
        ("consent page", consent, 200),
        ("redirect upstream", to_upstream, 303),
        ("error page", error, 400),
        ("callback error", callback, 400),
        ("body too large", too_large, 413),
        ("rate limited", throttled, 429),
    ] {
        assert_eq!(response.status(), status, "{case}");
        let h = response.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{case}: {csp}");
        assert!(!csp.contains("script-src") && !csp.contains("unsafe-eval"), "{case}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{case}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{case}");
        assert_eq!(h["cache-control"], "no-store", "{case}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{case}");
    }
}

/// The README's threat table names real tests: every test name in its last column is a
/// function in `tests/` or `src/`, and every threat test here is in the table.
#[test]
fn the_readme_threat_table_names_existing_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .split("## Security")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| threat"))
        .collect();
    assert!(table.len() >= 18, "the threat table is missing");
    let mut sources = String::new();
    for dir in ["tests", "src/oauth", "src/crypto"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut named = Vec::new();
    for row in &table {
        let tests = row.rsplit('|').nth(1).unwrap();
        for name in tests
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            assert!(sources.contains(&format!("fn {name}(")), "the README names `{name}`, which is not a test");
            named.push(name.to_owned());
        }
    }
    let this = std::fs::read_to_string(root.join("tests/security.rs")).unwrap();
    for line in this.lines().filter(|l| l.starts_with("async fn ") && l.contains("()")) {
        let name = line.trim_start_matches("async fn ").split('(').next().unwrap();
        assert!(named.iter().any(|n| n == name), "`{name}` is missing from the README's threat table");
    }
}
