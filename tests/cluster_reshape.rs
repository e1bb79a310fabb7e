//! Redis Cluster while it changes shape under load: three Tether instances (writing both record
//! formats) serve new logins, introspections, refresh rotations and revocations while a fourth primary joins, a third of
//! the hash slots migrate to it (keys met mid-migration: MOVED and ASK), and then migrate back
//! and the primary leaves. No request may fail, and no grant may be lost or come back after
//! its revocation. Real `redis-server` processes, made and reshaped with `redis-cli --cluster`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis::RedisCluster;
use common::*;
use serde_json::Value;
use tokio::sync::Mutex;

/// A grant the load knows: its client's latest tokens.
#[derive(Clone)]
struct Live {
    access: String,
    refresh: String,
}

/// Tether on the cluster `store`, with the per-address limits off: the load comes from one
/// address.
fn options(store: String) -> Options {
    let limits = "[limits]\nregister_per_minute = 0\nauthorize_per_minute = 0\ntoken_per_minute = 0\nintrospect_per_second = 0\n";
    Options { store: Some(store), extra: limits.to_owned(), ..Options::default() }
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    logins: AtomicU64,
    failures: AtomicU64,
    slowest_ms: AtomicU64,
}

impl Tally {
    /// Counts a response; anything but `ok` is a failure (with what it said, for the log).
    async fn count(&self, started: Instant, what: &str, response: reqwest::Response, ok: u16) -> Option<Value> {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.slowest_ms.fetch_max(ms, Ordering::Relaxed);
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
            eprintln!("{what}: {status} {body}");
            return None;
        }
        Some(body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_fails_or_is_lost_while_slots_move_and_a_primary_comes_and_goes() {
    let mut redis = RedisCluster::start();
    let store = format!("topology = \"cluster\"\nurl = \"{}\"", redis.url());
    let mut tether = TestCluster::spawn(3, options(store)).await;
    // Replicas writing both record formats: logins through the first write format 2, the
    // others (refreshes, revocations) format 1.
    tether.restart_with_store(0, "write_schema = 2").await;
    let tether = Arc::new(tether);
    let client = Arc::new(tether.apps[0].register_client("none").await);
    // Grants to start with, spread over the slots.
    let live = Arc::new(Mutex::new(Vec::new()));
    for i in 0..24 {
        let tokens = tether.apps[0].tokens_for(&client, &format!("early{i}")).await;
        let (access, refresh) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
        live.lock().await.push(Live { access: access.to_owned(), refresh: refresh.to_owned() });
    }
    let revoked = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));

    let mut load = Vec::new();
    // Introspection through every instance.
    for worker in 0..3usize {
        let (tether, live, tally, stop) = (tether.clone(), live.clone(), tally.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let grant = {
                    let live = live.lock().await;
                    live.get(n % live.len().max(1)).cloned()
                };
                let app = &tether.apps[n % 3];
                n += 1;
                let Some(grant) = grant else { continue };
                let started = Instant::now();
                let response = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &grant.access).await;
                if let Some(answer) = tally.count(started, "introspection", response, 200).await
                    && answer["active"] != true
                    && live.lock().await.iter().any(|g| g.access == grant.access)
                {
                    tally.failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("a live grant's token is inactive: {answer}");
                }
            }
        }));
    }
    // Refresh rotations and revocations (the revoked grant leaves the live set first), and new
    // logins; all through changing instances.
    {
        let (tether, client, live, revoked, tally, stop) =
            (tether.clone(), client.clone(), live.clone(), revoked.clone(), tally.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let app = &tether.apps[n % 3];
                if n.is_multiple_of(10) {
                    let grant = live.lock().await.remove(0);
                    let started = Instant::now();
                    tally.count(started, "revocation", app.revoke(&client, &grant.refresh).await, 200).await;
                    revoked.lock().await.push(grant.access);
                    // A whole login (it fails the test on any refusal).
                    let tokens = tether.apps[0].tokens_for(&client, &format!("late{n}")).await;
                    tally.logins.fetch_add(1, Ordering::Relaxed);
                    let access = tokens["access_token"].as_str().unwrap().to_owned();
                    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
                    live.lock().await.push(Live { access, refresh });
                    continue;
                }
                let index = n % 24;
                let Some(grant) = live.lock().await.get(index).cloned() else { continue };
                let started = Instant::now();
                if let Some(tokens) =
                    tally.count(started, "refresh", app.refresh(&client, &grant.refresh).await, 200).await
                {
                    let access = tokens["access_token"].as_str().unwrap().to_owned();
                    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
                    let mut live = live.lock().await;
                    if let Some(slot) = live.iter_mut().find(|g| g.refresh == grant.refresh) {
                        *slot = Live { access, refresh };
                    }
                }
            }
        }));
    }

    // The operator grows the cluster by a primary, moves a third of the slots to it, then
    // shrinks it back, all under the load.
    let shaping = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let new = redis.add_primary();
        redis.reshard(None, new, 5462);
        let moved = redis.slots_of(new);
        redis.reshard(Some(new), 0, moved);
        let left = redis.slots_of(new);
        redis.remove_primary(new);
        (redis, moved, left, started.elapsed())
    });
    let (redis, moved, left, took) = shaping.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (requests, failures) = (tally.requests.load(Ordering::Relaxed), tally.failures.load(Ordering::Relaxed));
    eprintln!(
        "cluster reshaped in {:.1} s ({moved} slots there and back): {requests} requests and {} logins, {failures} \
         failed, slowest {} ms",
        took.as_secs_f64(),
        tally.logins.load(Ordering::Relaxed),
        tally.slowest_ms.load(Ordering::Relaxed)
    );
    assert!(moved >= 5461, "a third of the slots moved to the new primary: {moved}");
    assert_eq!(left, 0, "every slot moved back before the primary left");
    assert_eq!(failures, 0, "requests failed while the cluster changed shape");
    assert!(requests > 200, "the load ran throughout: {requests} requests");

    // Nothing lost, nothing back: every live grant works, every revoked one stays revoked.
    let app = &tether.apps[1];
    for grant in live.lock().await.iter() {
        assert_eq!(app.introspect(&grant.access).await["active"], true, "a grant was lost");
        assert_eq!(app.refresh(&client, &grant.refresh).await.status(), 200, "a refresh chain was lost");
    }
    let revoked = revoked.lock().await;
    assert!(!revoked.is_empty());
    for access in revoked.iter() {
        assert_eq!(app.introspect(access).await["active"], false, "a revoked grant came back");
    }
    let spread = redis.keys_per_node();
    assert!(spread.iter().take(3).all(|&n| n > 0), "the three primaries hold Tether's keys again: {spread:?}");
}

/// A quiet store (no other traffic to show its client where slots went): a slot moves behind
/// its back, and the next transaction (MULTI/EXEC, aborted for MOVED, which the cluster client
/// does not follow) and the next read on it still succeed, on the slot's new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_a_slot_that_moved_is_sent_again_where_the_slot_went() {
    use tether::store::{BrowserStore, GrantStore, RedisStore, RedisTarget, Topology};
    let redis = RedisCluster::start();
    let store =
        RedisStore::connect(&RedisTarget::new(Topology::Cluster, &redis.url()), "quiet", Duration::from_secs(2))
            .unwrap();
    let ttl = Duration::from_secs(60);
    store.remember_grant("browser-1", "client", "files", "g1", ttl).await.unwrap();
    let key = "quiet:v1:browser:{browser-1}";
    let from = redis.primary_of(key);
    assert_eq!(redis.nodes[from].cli(&["HLEN", key]).trim(), "1", "stored where the test looks");
    let to = (from + 1) % 3;
    redis.move_slot_of(key, to);
    assert_eq!(redis.primary_of(key), to);
    store.remember_grant("browser-1", "client", "files", "g2", ttl).await.expect("a transaction after a slot moved");
    assert_eq!(store.remembered_grant("browser-1", "client", "files").await.unwrap().as_deref(), Some("g2"));
    // And again, further on; then a plain read that the client follows by itself.
    redis.move_slot_of(key, (to + 1) % 3);
    store.remember_grant("browser-1", "client", "files", "g3", ttl).await.expect("after a second move");
    // A plain pipeline that only reads (a grant on a connection: grant and connection at once).
    let grant = "0123456789abcdef01234567-00000000000000000000000000000001";
    assert_eq!(store.grant(grant).await.unwrap(), None);
    let link_key = "quiet:v1:link:{0123456789abcdef01234567}";
    redis.move_slot_of(link_key, (redis.primary_of(link_key) + 1) % 3);
    assert_eq!(store.grant(grant).await.expect("a read pipeline after its slot moved"), None);
    assert_eq!(store.remembered_grant("browser-1", "client", "files").await.unwrap().as_deref(), Some("g3"));
}

/// One request's outcome under failover.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
    slowest_ms: AtomicU64,
}

impl Outcomes {
    fn count(&self, started: Instant, status: u16, what: &str) {
        self.slowest_ms.fetch_max(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        match status {
            200 => &self.ok,
            503 => &self.unavailable,
            _ => {
                eprintln!("{what}: {status}");
                &self.other
            }
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// A primary with a replica is killed under load: its replica takes over; until then the
/// requests that need its slots get 503 (never a 500, never a wait past the store's deadline),
/// the rest go on; grants stored there before stay. The figures go to deploy/README.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_under_load_fails_over_with_503s_only_and_keeps_its_grants() {
    let mut redis = RedisCluster::start_with_replicas(1);
    let store = format!("topology = \"cluster\"\nurl = \"{}\"", redis.url());
    let mut tether = TestCluster::spawn(3, options(store)).await;
    // Replicas writing both record formats: logins through the first write format 2, the
    // others (refreshes, revocations) format 1.
    tether.restart_with_store(0, "write_schema = 2").await;
    let tether = Arc::new(tether);
    let client = Arc::new(tether.apps[0].register_client("none").await);
    // Grants until a few live on the primary that will die (node 0) and a few elsewhere.
    let (mut kept, mut churn) = (Vec::new(), Vec::new());
    for i in 0..60 {
        let tokens = tether.apps[0].tokens_for(&client, &format!("p{i}")).await;
        let gid = jwt_claims(tokens["access_token"].as_str().unwrap())["gid"].as_str().unwrap().to_owned();
        let grant = Live {
            access: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
        };
        let on_victim = redis.primary_of(&grant_key(&gid)) == 0;
        match (on_victim, i % 2) {
            (true, 0) => kept.push(grant),
            (true, _) => churn.push(grant),
            _ => {}
        }
    }
    assert!(
        kept.len() >= 3 && churn.len() >= 3,
        "grants on the victim: {} kept, {} refreshed",
        kept.len(),
        churn.len()
    );
    let (outcomes, stop) = (Arc::new(Outcomes::default()), Arc::new(AtomicBool::new(false)));
    let recovered = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let killed_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut load = Vec::new();
    // Introspection of the kept grants (reads), and refresh rotations of the others (writes).
    {
        let (tether, kept, outcomes, stop) = (tether.clone(), kept.clone(), outcomes.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let response =
                    tether.apps[n % 3].introspect_as(RESOURCE_ID, RESOURCE_SECRET, &kept[n % kept.len()].access);
                outcomes.count(started, response.await.status().as_u16(), "introspection");
            }
        }));
    }
    {
        let (tether, client, outcomes, stop) = (tether.clone(), client.clone(), outcomes.clone(), stop.clone());
        let (recovered, killed_at) = (recovered.clone(), killed_at.clone());
        let mut chains = churn.clone();
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let i = n % chains.len();
                let started = Instant::now();
                let response = tether.apps[n % 3].refresh(&client, &chains[i].refresh).await;
                let status = response.status().as_u16();
                outcomes.count(started, status, "refresh");
                if status == 200 {
                    let tokens: Value = response.json().await.unwrap();
                    chains[i].refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
                    // A write sent after the kill.
                    if killed_at.lock().unwrap().is_some_and(|at| started > at) {
                        recovered.lock().unwrap().get_or_insert(Instant::now());
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = outcomes.ok.load(Ordering::Relaxed);
    redis.kill(0);
    *killed_at.lock().unwrap() = Some(Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    while recovered.lock().unwrap().is_none() {
        assert!(Instant::now() < deadline, "writes to the dead primary's slots did not resume within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let killed = killed_at.lock().unwrap().unwrap();
    let took = recovered.lock().unwrap().unwrap() - killed;
    // Every instance reads the dead primary's slots again (each has its own view of the cluster).
    let mut every = Duration::ZERO;
    for (i, app) in tether.apps.iter().enumerate() {
        loop {
            let response = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &kept[0].access).await;
            let status = response.status().as_u16();
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "instance {i} still answers {status} for the dead primary's slots");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        every = every.max(killed.elapsed());
    }
    eprintln!("every instance reads the failed-over slots {:.2} s after the kill", every.as_secs_f64());
    let (ok, unavailable, other) = (
        outcomes.ok.load(Ordering::Relaxed),
        outcomes.unavailable.load(Ordering::Relaxed),
        outcomes.other.load(Ordering::Relaxed),
    );
    let slowest = outcomes.slowest_ms.load(Ordering::Relaxed);
    let mut survived = 0;
    for grant in &kept {
        survived += usize::from(tether.apps[2].introspect(&grant.access).await["active"] == true);
    }
    eprintln!(
        "failover: writes resumed {:.2} s after the kill; {ok} requests answered 200 ({before} before the kill), \
         {unavailable} answered 503, {other} otherwise; slowest {slowest} ms; {survived} of {} grants on the dead \
         primary survived",
        took.as_secs_f64(),
        kept.len()
    );
    assert_eq!(other, 0, "only 503 while the primary is gone");
    assert!(slowest < 2 * 2000 + 1000, "no request waited past the store deadline: {slowest} ms");
    assert!(took < Duration::from_secs(15), "the replica took over: {took:?}");
    assert_eq!(survived, kept.len(), "grants written long before the kill survive on the replica");
    assert!(redis.healthy(), "the cluster is whole again");
}
