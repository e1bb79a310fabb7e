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
