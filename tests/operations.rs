//! Operations: Prometheus metrics (what they count, and that they never carry a secret or a
//! user), the separate metrics listener, and Tether running on a real Redis Cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;

#[tokio::test]
async fn metrics_count_requests_tokens_introspections_upstream_calls_and_store_latency_without_secrets() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "metrics-user").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    let other = app.introspect_as(OTHER_RESOURCE_ID, OTHER_RESOURCE_SECRET, access).await;
    assert_eq!(other.json::<serde_json::Value>().await.unwrap()["active"], false);
    app.introspect("not-a-token").await;

    let metrics = scrape(&app.url("/metrics")).await;
    let expect = |series: &str, at_least: f64| {
        let value = sample(&metrics, series).unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"));
        assert!(value >= at_least, "{series} = {value}, expected at least {at_least}");
    };
    expect(r#"tether_http_requests_total{endpoint="/token",method="POST",status="200"}"#, 1.0);
    expect(r#"tether_http_requests_total{endpoint="/register",method="POST",status="201"}"#, 1.0);
    expect(r#"tether_tokens_issued_total{grant_type="authorization_code"}"#, 1.0);
    expect(r#"tether_introspections_total{outcome="active",reason=""}"#, 1.0);
    expect(r#"tether_introspections_total{outcome="wrong_audience",reason="wrong_audience"}"#, 1.0);
    expect(r#"tether_introspections_total{outcome="inactive",reason="not_a_token"}"#, 1.0);
    expect(r#"tether_upstream_calls_total{provider="dev",call="code_exchange",outcome="ok"}"#, 1.0);
    expect("tether_store_operation_duration_seconds_count", 5.0);
    expect(r#"tether_http_request_duration_seconds_count{endpoint="/introspect",method="POST",status="200"}"#, 3.0);
    // Exactly the counts of this run (the registry is per instance).
    assert_eq!(sample(&metrics, r#"tether_tokens_issued_total{grant_type="authorization_code"}"#), Some(1.0));

    // Route templates, never raw paths: a client's registration URI names it by template.
    let read = app.api.get(app.url(&format!("/register/{}", client.client_id))).send().await.unwrap();
    assert_eq!(read.status(), 401, "no registration access token");
    let metrics = scrape(&app.url("/metrics")).await;
    assert!(metrics.contains(r#"endpoint="/register/{client_id}""#), "{metrics}");
    for secret in [access, refresh, client.client_id.as_str(), "metrics-user", RESOURCE_SECRET] {
        assert!(!metrics.contains(secret), "the metrics carry a token, id or secret");
    }
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_listener_only() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = Options { extra: format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n"), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Memory, options).await;
    assert_eq!(app.api.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    let metrics = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(sample(&metrics, r#"tether_http_requests_total{endpoint="/healthz",method="GET",status="200"}"#).is_some());
    let public = app.api.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "metrics are not on the public listener when they have their own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_flow_runs_on_a_three_primary_redis_cluster() {
    let cluster = RedisCluster::start();
    let options =
        Options { store: Some(format!("topology = \"cluster\"\nurl = \"{}\"", cluster.url())), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Memory, options).await;
    assert_eq!(app.api.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let client = app.register_client("none").await;
    let mut refresh = String::new();
    for user in ["ada", "bob", "cy", "dee", "eve", "fay"] {
        let tokens = app.tokens_for(&client, user).await;
        assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
        refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    }
    let rotated = app.refresh(&client, &refresh).await;
    assert_eq!(rotated.status(), 200);
    let rotated: serde_json::Value = rotated.json().await.unwrap();
    assert_eq!(app.introspect(rotated["access_token"].as_str().unwrap()).await["active"], true);
    let spread = cluster.keys_per_node();
    assert!(spread.iter().all(|&n| n > 0), "every primary holds some of Tether's keys: {spread:?}");
}

#[tokio::test]
async fn the_image_health_check_passes_only_while_healthz_answers_200() {
    let app = TestApp::spawn(Backend::Memory).await;
    let check = |url: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tether")).args(["healthcheck", &url]).output().await.unwrap()
    };
    assert!(check(app.url("/healthz")).await.status.success());
    let missing = check(app.url("/no-such-page")).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(!check(format!("http://127.0.0.1:{closed}/healthz")).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tether_finds_the_master_through_sentinel_and_follows_it_when_the_master_dies() {
    let mut redis = RedisSentinel::start();
    let store = format!("topology = \"sentinel\"\nsentinel_master = \"mymaster\"\nurl = \"{}\"", redis.url());
    let app = TestApp::spawn_with(Backend::Memory, Options { store: Some(store), ..Options::default() }).await;
    assert_eq!(app.api.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "sentinel-user").await;
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    assert!(redis.master.cli(&["DBSIZE"]).trim().parse::<u32>().unwrap() > 0, "Tether wrote to the master");

    let died = std::time::Instant::now();
    redis.kill_master();
    let promoted = died.elapsed();

    // Tether's connection to the dead master fails: it asks the sentinel again and writes
    // to the new master. A refresh (a write) proves it.
    let started = std::time::Instant::now();
    let rotated = loop {
        let response = app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await;
        if response.status() == 200 {
            break response.json::<serde_json::Value>().await.unwrap();
        }
        let body = expect_error(response, 503, "temporarily_unavailable", "during the failover").await;
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "still failing after 10 s: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    eprintln!(
        "the sentinel promoted the replica {promoted:?} after the master died; writes resumed {:?} later",
        started.elapsed()
    );
    assert_eq!(app.introspect(rotated["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true, "grant kept");
    let fresh = app.tokens_for(&client, "after-failover").await;
    assert_eq!(app.introspect(fresh["access_token"].as_str().unwrap()).await["active"], true);
    assert!(redis.replica.cli(&["ROLE"]).starts_with("master"));
}

/// An OTLP/HTTP collector stand-in: keeps the bodies POSTed to /v1/traces.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            keep.lock().unwrap().push(body.to_vec());
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_join_the_callers_trace_and_are_exported_over_otlp_without_query_strings() {
    let (endpoint, received) = collector().await;
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let mut replicas = common::process::Replicas::start(1, Options { env, ..Options::default() }).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let health = replicas[0].api.get(replicas[0].url("/healthz")).header("traceparent", &traceparent).send().await;
    assert_eq!(health.unwrap().status(), 200);
    let callback = replicas[0].url("/callback?code=secret-code-in-query&state=secret-state");
    replicas[0].api.get(callback).header("traceparent", &traceparent).send().await.unwrap();
    replicas[0].signal(libc::SIGTERM);
    assert!(replicas[0].exited(std::time::Duration::from_secs(15)).await.is_some_and(|s| s.success()));

    // The log lines of a request carry the caller's trace id.
    let log = replicas[0].log();
    let line = log.lines().find(|l| l.contains(r#""path":"/callback""#)).expect("a log line for /callback");
    assert!(line.contains(&format!(r#""trace_id":"{trace}""#)), "{line}");

    // The spans were exported (flushed at shutdown) into the same trace, named by route.
    let bodies = received.lock().unwrap().concat();
    let trace_bytes: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap()).collect();
    assert!(contains(&bodies, &trace_bytes), "no exported span in trace {trace} ({} bytes received)", bodies.len());
    assert!(contains(&bodies, b"GET /healthz") && contains(&bodies, b"GET /callback"), "span names");
    assert!(contains(&bodies, b"tether"), "service name");
    assert!(!contains(&bodies, b"secret-code-in-query") && !contains(&bodies, b"secret-state"), "query in a span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_export_the_log_lines_still_carry_the_callers_trace_id() {
    let mut replicas = common::process::Replicas::start(1, Options::default()).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (metadata, jwks) = ("/.well-known/oauth-authorization-server", "/.well-known/jwks.json");
    let traced = replicas[0]
        .api
        .get(replicas[0].url(metadata))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    let malformed = replicas[0].api.get(replicas[0].url(jwks)).header("traceparent", "00-zz-yy-01").send().await;
    assert_eq!(malformed.unwrap().status(), 200, "a malformed traceparent is ignored");
    let probe = replicas[0].api.get(replicas[0].url("/healthz")).send().await;
    assert_eq!(probe.unwrap().status(), 200);
    replicas[0].signal(libc::SIGTERM);
    assert!(replicas[0].exited(std::time::Duration::from_secs(15)).await.is_some());
    let log = replicas[0].log();
    let line = |path: &str| log.lines().find(|l| l.contains(&format!(r#""path":"{path}""#))).unwrap().to_owned();
    assert!(line(metadata).contains(&format!(r#""trace_id":"{trace}""#)), "{log}");
    assert!(!line(jwks).contains("trace_id"), "{log}");
    assert!(!log.contains(r#""path":"/healthz""#), "a successful probe is logged at debug only: {log}");
    assert!(!log.contains("otel."), "OpenTelemetry fields stay out of the logs: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tether_reaches_redis_over_tls_with_a_private_ca_as_an_acl_user() {
    let redis = RedisServer::start_tls("tether", "acl-password-for-tether");
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("redis-password");
    std::fs::write(&password_file, "acl-password-for-tether\n").unwrap();
    let store = |ca: bool, password: &std::path::Path| {
        let ca = if ca { format!("ca_file = \"{}\"\n", redis.ca_file().display()) } else { String::new() };
        format!(
            "url = \"rediss://127.0.0.1:{}\"\nusername = \"tether\"\npassword_file = \"{}\"\n{ca}",
            redis.port,
            password.display()
        )
    };
    let app = TestApp::spawn_with(
        Backend::Memory,
        Options { store: Some(store(true, &password_file)), ..Options::default() },
    )
    .await;
    assert_eq!(app.api.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, "tls-user").await;
    assert_eq!(app.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(app.refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    assert!(redis.cli(&["DBSIZE"]).trim().parse::<u32>().unwrap() > 0, "Tether's keys are in this Redis");

    // Without the private CA the certificate is not trusted; with a wrong password the user
    // is refused: either way Tether stays up and unready, and says why in its answer.
    let wrong = secrets.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    for (case, lines) in [("untrusted CA", store(false, &password_file)), ("wrong password", store(true, &wrong))] {
        let refused = TestApp::spawn_with(Backend::Memory, Options { store: Some(lines), ..Options::default() }).await;
        let ready = refused.api.get(refused.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "{case}");
        let register = refused.register(&serde_json::json!({"redirect_uris": [CLIENT_REDIRECT]})).await;
        expect_error(register, 503, "temporarily_unavailable", case).await;
    }
}
