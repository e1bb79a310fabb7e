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
