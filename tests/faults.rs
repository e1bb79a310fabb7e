//! The faults operators see, against real `tether serve` processes on a real Redis: several
//! replicas behind a load balancer, Redis going away under load, a replica killed with
//! SIGKILL, and SIGTERM during a request. Every simulated user comes from 127.0.0.1, as the
//! users of a multi-user host's backend do, so the per-address limits are sized for that
//! (README "Security").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::process::Replicas;
use common::*;
use serde_json::Value;
use tokio::task::JoinSet;

fn options() -> Options {
    let extra = "[limits]\nregister_per_minute = 0\nauthorize_per_minute = 0\ntoken_per_minute = 0\n";
    Options { extra: extra.into(), ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_flows_round_robined_over_three_replicas_all_complete() {
    let replicas = Arc::new(Replicas::start(3, options()).await);
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(replicas.client(i).await);
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut flows = JoinSet::new();
    for k in 0..200 {
        let (replicas, client, gate) = (replicas.clone(), clients[k % clients.len()].clone(), gate.clone());
        flows.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            replicas.flow(&client, &format!("user-{k}"), k).await
        });
    }
    let (mut completed, mut failures) = (0, Vec::new());
    while let Some(flow) = flows.join_next().await {
        match flow {
            Ok(tokens) if tokens["access_token"].is_string() => completed += 1,
            Ok(tokens) => failures.push(format!("no access token in {tokens}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{} of 200 flows failed: {failures:#?}", failures.len());
    assert_eq!(completed, 200);

    // The flows really were spread: each replica handled a third of the callbacks and of the
    // code exchanges (the counters are per process).
    for i in 0..3 {
        let metrics = scrape(&replicas[i].url("/metrics")).await;
        for series in [
            r#"tether_http_requests_total{endpoint="/callback",method="GET",status="302"}"#,
            r#"tether_tokens_issued_total{grant_type="authorization_code"}"#,
        ] {
            let count = sample(&metrics, series).unwrap_or(0.0);
            assert!(count >= 66.0, "replica {i}: {series} = {count}");
        }
    }
}

/// One request of the load and what came of it.
#[derive(Debug)]
struct Outcome {
    replica: usize,
    started: Instant,
    ended: Instant,
    /// "ok", "inactive", "503 temporarily_unavailable", "transport", ...
    result: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.result == "ok"
    }
}

/// A client holding one grant: until `stop`, introspects its access token and every fifth
/// request refreshes, each request on the next replica (a failed refresh is retried with
/// the same refresh token on the next one, as a client would). Returns what happened and
/// the tokens it ends with.
async fn hold(
    tethers: Vec<Tether>,
    client: TestClient,
    mut tokens: Value,
    offset: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<Outcome>, Value) {
    let mut outcomes = Vec::new();
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let replica = i % tethers.len();
        let tether = &tethers[replica];
        let started = Instant::now();
        let refresh = i.is_multiple_of(5);
        let request = if refresh {
            let refresh_token = tokens["refresh_token"].as_str().unwrap();
            tether.api.post(tether.url("/token")).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("resource", RESOURCE_URI),
                ("client_id", &client.client_id),
            ])
        } else {
            let access_token = tokens["access_token"].as_str().unwrap();
            tether
                .api
                .post(tether.url("/introspect"))
                .basic_auth(RESOURCE_ID, Some(RESOURCE_SECRET))
                .form(&[("token", access_token)])
        };
        // Errors are outcomes here (a dead replica refuses connections); a hang shows as one.
        let sent = request.timeout(Duration::from_secs(5)).send().await;
        let result = match sent {
            Err(_) => "transport".to_owned(),
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                match (status, refresh) {
                    (200, true) if body["refresh_token"].is_string() => {
                        tokens = body;
                        "ok".to_owned()
                    }
                    (200, false) if body["active"] == true => "ok".to_owned(),
                    (200, false) => format!("inactive {body}"),
                    _ => format!("{status} {}", body["error"].as_str().unwrap_or("?")),
                }
            }
        };
        outcomes.push(Outcome { replica, started, ended: Instant::now(), result });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (outcomes, tokens)
}

/// Grants issued before a fault: `n` flows through every replica in turn.
async fn grants(replicas: &Replicas, client: &TestClient, n: usize, who: &str) -> Vec<Value> {
    let mut grants = Vec::new();
    for k in 0..n {
        grants.push(replicas.flow(client, &format!("{who}-{k}"), k).await);
    }
    grants
}

/// Starts one `hold` per grant over `tethers`.
fn load(
    tethers: &[Tether],
    client: &TestClient,
    grants: &[Value],
    stop: &Arc<AtomicBool>,
) -> JoinSet<(Vec<Outcome>, Value)> {
    let mut holders = JoinSet::new();
    for (k, tokens) in grants.iter().enumerate() {
        holders.spawn(hold(tethers.to_vec(), client.clone(), tokens.clone(), k, stop.clone()));
    }
    holders
}

async fn finish(mut holders: JoinSet<(Vec<Outcome>, Value)>) -> (Vec<Outcome>, Vec<Value>) {
    let (mut outcomes, mut held) = (Vec::new(), Vec::new());
    while let Some(done) = holders.join_next().await {
        let (o, tokens) = done.unwrap();
        outcomes.extend(o);
        held.push(tokens);
    }
    (outcomes, held)
}

async fn status(tether: &Tether, path: &str) -> u16 {
    tether.api.get(tether.url(path)).send().await.unwrap().status().as_u16()
}

/// Every grant still works: its latest access token introspects active through `via`, and
/// its refresh token refreshes there.
async fn assert_all_alive(via: &Tether, client: &TestClient, held: &[Value], case: &str) {
    for (k, tokens) in held.iter().enumerate() {
        let answer = via.introspect(tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(answer["active"], true, "{case}: grant {k} lost: {answer}");
        let refreshed = via.refresh(client, tokens["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.status(), 200, "{case}: grant {k} no longer refreshes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_under_load_fails_fast_and_all_recover_within_a_second_with_no_grant_lost() {
    let mut replicas = Replicas::start(3, options()).await;
    let client = replicas.client(0).await;
    let before = grants(&replicas, &client, 12, "before").await;
    let tethers: Vec<Tether> = replicas.replicas.iter().map(|r| r.tether.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let holders = load(&tethers, &client, &before, &stop);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let down = Instant::now();
    replicas.redis.shut_down_saving();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, tether) in tethers.iter().enumerate() {
        assert_eq!(status(tether, "/readyz").await, 503, "replica {i}: readyz while Redis is down");
        assert_eq!(status(tether, "/healthz").await, 200, "replica {i}: healthz does not depend on Redis");
    }
    tokio::time::sleep(Duration::from_millis(1700)).await;

    replicas.redis.restart();
    let up = Instant::now();
    // Each replica answers from Redis again within a second, without a restart.
    let probe = before[0]["access_token"].as_str().unwrap();
    let mut recovered = Vec::new();
    for tether in &tethers {
        loop {
            let response = tether.introspect_as(RESOURCE_ID, RESOURCE_SECRET, probe).await;
            if response.status() == 200 {
                assert_eq!(response.json::<Value>().await.unwrap()["active"], true, "the probe grant survived");
                break;
            }
            assert!(up.elapsed() < Duration::from_secs(10), "not recovered 10 s after Redis came back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        recovered.push(up.elapsed());
        assert_eq!(status(tether, "/readyz").await, 200);
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    let (outcomes, held) = finish(holders).await;

    let settled = up + Duration::from_secs(1);
    let before_outage: Vec<_> = outcomes.iter().filter(|o| o.ended < down).collect();
    let during: Vec<_> = outcomes.iter().filter(|o| o.ended >= down && o.started < settled).collect();
    let after: Vec<_> = outcomes.iter().filter(|o| o.started >= settled).collect();
    let failed = |set: &[&Outcome]| set.iter().filter(|o| !o.ok()).map(|o| o.result.clone()).collect::<Vec<_>>();
    let refused = during.iter().filter(|o| o.result == "503 temporarily_unavailable").count();
    let slowest = during.iter().map(|o| o.ended - o.started).max().unwrap_or_default();
    eprintln!(
        "before: {} requests, during: {} ({refused} refused, slowest {slowest:?}), after: {}; recovered after {recovered:?}",
        before_outage.len(),
        during.len(),
        after.len()
    );
    assert!(before_outage.len() > 100 && after.len() > 100, "too little load to mean anything");
    assert_eq!(failed(&before_outage), Vec::<String>::new(), "before the outage");
    assert_eq!(failed(&after), Vec::<String>::new(), "a second after Redis came back");
    let wrong: Vec<_> = during.iter().filter(|o| !o.ok() && o.result != "503 temporarily_unavailable").collect();
    assert!(wrong.is_empty(), "during the outage only 503 temporarily_unavailable may fail: {wrong:?}");
    assert!(refused > 20, "the outage was not seen: {refused} refusals");
    // Bounded by the 500 ms store deadline, never a hang.
    assert!(slowest < Duration::from_millis(1500), "a request took {slowest:?} during the outage");
    assert!(recovered.iter().all(|d| *d <= Duration::from_secs(1)), "recovery took {recovered:?}");

    // No grant issued before the outage was lost, including those rotated during the load.
    assert_all_alive(&tethers[1], &client, &held, "after the outage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_with_sigkill_under_load_loses_no_token() {
    let mut replicas = Replicas::start(3, options()).await;
    let client = replicas.client(0).await;
    // Fifteen grants, five of whose codes were exchanged by the replica about to die.
    let issued = grants(&replicas, &client, 15, "issued").await;
    let tethers: Vec<Tether> = replicas.replicas.iter().map(|r| r.tether.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let holders = load(&tethers, &client, &issued, &stop);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = Instant::now();
    replicas[1].signal(libc::SIGKILL);
    let exit = replicas[1].exited(Duration::from_secs(5)).await.expect("SIGKILL did not end the replica");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&exit), Some(libc::SIGKILL));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (outcomes, held) = finish(holders).await;

    let survivors: Vec<_> = outcomes.iter().filter(|o| o.replica != 1).collect();
    let failed: Vec<_> = survivors.iter().filter(|o| !o.ok()).collect();
    assert!(failed.is_empty(), "the surviving replicas failed requests: {failed:?}");
    assert!(survivors.iter().filter(|o| o.started > killed).count() > 100, "too little load after the kill");
    let at_dead: Vec<_> = outcomes.iter().filter(|o| o.replica == 1 && o.started > killed).collect();
    assert!(!at_dead.is_empty() && at_dead.iter().all(|o| o.result == "transport"), "{at_dead:?}");

    // Every token issued before the kill still introspects through the others, and every
    // grant (including ones whose refresh was cut off at the dead replica) goes on.
    for (k, tokens) in issued.iter().enumerate() {
        for survivor in [0, 2] {
            let answer = replicas[survivor].introspect(tokens["access_token"].as_str().unwrap()).await;
            assert_eq!(answer["active"], true, "token {k} through replica {survivor}: {answer}");
        }
    }
    assert_all_alive(&replicas[2], &client, &held, "after the kill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_request_in_flight_finish_and_refuses_new_ones() {
    let mut replicas = Replicas::start(1, options()).await;
    let client = replicas.client(0).await;
    // A callback whose upstream code exchange takes 1.5 s (the provider's timeout is 2 s) is
    // in flight when SIGTERM arrives.
    let pkce = Pkce::new();
    let browser = Browser::new();
    let to_upstream = replicas[0].go_upstream(&browser, &replicas[0].authorize_url(&client, &pkce, &[])).await;
    let back = browser.upstream_login(&to_upstream, "tess", "approve").await;
    replicas.upstream.delay_token_endpoint(Some(Duration::from_millis(1500)));
    let callback = replicas.via(0, &location(&back));
    let in_flight = tokio::spawn(async move { browser.client.get(callback).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    replicas[0].signal(libc::SIGTERM);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = reqwest::Client::new();
    let refused = fresh.get(replicas[0].url("/healthz")).timeout(Duration::from_secs(2)).send().await;
    assert!(refused.is_err(), "a new connection was accepted after SIGTERM: {:?}", refused.map(|r| r.status()));

    let finished = in_flight.await.unwrap().expect("the in-flight request was cut off");
    assert_eq!(finished.status(), 302, "the in-flight callback completed");
    let delivered = location(&finished);
    assert!(query(&delivered).contains_key("code"), "and delivered a code: {delivered}");
    let exit = replicas[0].exited(Duration::from_secs(10)).await.expect("tether did not exit after SIGTERM");
    assert!(exit.success(), "exit status {exit}");
    assert!(sent.elapsed() >= Duration::from_millis(1000), "exited before the request finished");
    assert!(replicas[0].log().contains("tether stopped"), "{}", replicas[0].log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_delay_turns_readiness_off_first_and_keeps_serving_until_a_second_signal() {
    let options = Options { server: "shutdown_delay_secs = 30".into(), ..options() };
    let mut replicas = Replicas::start(1, options).await;
    let client = replicas.client(0).await;
    let tokens = replicas.flow(&client, "dora", 0).await;
    replicas[0].signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Unready, so the load balancer stops sending; whatever it still sends is served, on
    // connections old and new.
    assert_eq!(status(&replicas[0], "/readyz").await, 503);
    let fresh = Tether::new(&replicas[0].base, &replicas.issuer);
    assert_eq!(fresh.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(replicas[0].refresh(&client, tokens["refresh_token"].as_str().unwrap()).await.status(), 200);
    assert!(replicas[0].exited(Duration::from_millis(700)).await.is_none(), "stopped within the delay");

    // A second signal stops it now.
    let second = Instant::now();
    replicas[0].signal(libc::SIGTERM);
    let exit = replicas[0].exited(Duration::from_secs(10)).await.expect("the second SIGTERM did not stop tether");
    assert!(exit.success(), "exit status {exit}");
    assert!(second.elapsed() < Duration::from_secs(5), "took {:?} after the second signal", second.elapsed());
    assert!(replicas[0].log().contains("second signal"), "{}", replicas[0].log());
}
