//! Soak: a few grants refreshed thousands of times on real `tether serve` processes and a
//! real Redis, every new access token introspected, and new logins alongside. Between two
//! checkpoints Redis must hold nothing more than the new logins' records, the soaked grants'
//! records must not grow, Tether's memory must stay where it was, and every short-lived
//! record must carry its designed lifetime and be gone when it ends.
//!
//! `SOAK_REFRESHES` (refreshes of each grant per phase) sizes it; `make test` runs the
//! default, a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::process::Replicas;
use common::*;
use serde_json::Value;

const GRANTS: usize = 3;
const GRACE_SECS: u64 = 2;
const CODE_SECS: i64 = 10;
const AUTHORIZATION_SECS: i64 = 60;
/// Sliding lifetime of grants, browsers and refresh families (the default, 30 days).
const REFRESH_SECS: i64 = 2_592_000;
/// How long a revoked grant's tombstone is kept (the default, 30 days).
const TOMBSTONE_SECS: i64 = 2_592_000;
/// How long audit events are kept (the default, 30 days).
const AUDIT_SECS: i64 = 2_592_000;
/// How long a dynamic client that obtained tokens is kept (the default, 90 days).
const CLIENT_SECS: i64 = 7_776_000;
/// How long a browser stays signed in to Tether (the default, an hour).
const SESSION_SECS: i64 = 3600;

fn refreshes_per_phase() -> usize {
    std::env::var("SOAK_REFRESHES").ok().and_then(|n| n.parse().ok()).unwrap_or(400)
}

fn options() -> Options {
    let extra = format!(
        "[limits]\nregister_per_minute = 0\nauthorize_per_minute = 0\ntoken_per_minute = 0\nintrospect_per_second = 0\n\
         [tokens]\nrefresh_grace_secs = {GRACE_SECS}\ncode_ttl_secs = {CODE_SECS}\n\
         authorization_ttl_secs = {AUTHORIZATION_SECS}\nverified_cache_entries = 64\n"
    );
    Options { extra, ..Options::default() }
}

/// The kind of a key: the key with its hash tag's content left out (`test:v1:code:{}:used`).
fn kind(key: &str) -> String {
    match (key.find('{'), key.find('}')) {
        (Some(open), Some(close)) if open < close => {
            // A grant on a connection: `{connection}-<rest of the grant id>`.
            let rest = &key[close + 1..];
            let rest = match rest.strip_prefix('-') {
                Some(id) => &id[id.find(':').unwrap_or(id.len())..],
                None => rest,
            };
            format!("{}{{}}{rest}", &key[..open])
        }
        _ => key.to_owned(),
    }
}

/// What Redis and the replicas hold at one moment.
struct Snapshot {
    /// Every key with its time to live (ms; -1 none) and `MEMORY USAGE`.
    keys: BTreeMap<String, (i64, u64)>,
    used_memory: u64,
    /// Events in the audit trail.
    stream_len: u64,
    rss_kib: Vec<u64>,
}

impl Snapshot {
    async fn take(replicas: &Replicas, redis: &mut ::redis::aio::MultiplexedConnection) -> Self {
        let mut keys = BTreeMap::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) =
                ::redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(redis).await.unwrap();
            for key in batch {
                let ttl: i64 = ::redis::cmd("PTTL").arg(&key).query_async(redis).await.unwrap();
                let size: Option<u64> = ::redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(redis)
                    .await
                    .unwrap();
                if ttl != -2 {
                    keys.insert(key, (ttl, size.unwrap_or(0)));
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let info: String = ::redis::cmd("INFO").arg("memory").query_async(redis).await.unwrap();
        let used_memory = info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap();
        let stream_len: u64 = ::redis::cmd("XLEN").arg("test:v1:audit").query_async(redis).await.unwrap();
        Self { keys, used_memory, stream_len, rss_kib: replicas.replicas.iter().map(|r| r.rss_kib()).collect() }
    }

    fn count(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for key in self.keys.keys() {
            *counts.entry(kind(key)).or_default() += 1;
        }
        counts
    }
}

/// Refreshes each grant `n` times, alternating replicas, and introspects every new access
/// token on the other one; meanwhile logs new users in until the refreshes are done.
/// Returns how many logins completed.
async fn phase(replicas: &Arc<Replicas>, client: &TestClient, held: &mut [Value], n: usize, phase: &str) -> usize {
    let done = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicUsize::new(0));
    let logging_in = {
        let (replicas, client, done, logins) = (replicas.clone(), client.clone(), done.clone(), logins.clone());
        let phase = phase.to_owned();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let k = logins.load(Ordering::Relaxed);
                replicas.flow(&client, &format!("{phase}-login-{k}"), k).await;
                logins.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut refreshers = tokio::task::JoinSet::new();
    for (g, tokens) in held.iter().enumerate() {
        let (replicas, client, mut tokens) = (replicas.clone(), client.clone(), tokens.clone());
        refreshers.spawn(async move {
            for i in 0..n {
                let (at, check) = (&replicas[g + i], &replicas[g + i + 1]);
                let old = tokens["refresh_token"].as_str().unwrap().to_owned();
                let response = at.refresh(&client, &old).await;
                assert_eq!(response.status(), 200, "grant {g}, refresh {i}");
                tokens = response.json().await.unwrap();
                assert_ne!(tokens["refresh_token"].as_str().unwrap(), old, "grant {g}, refresh {i}: not rotated");
                let answer = check.introspect(tokens["access_token"].as_str().unwrap()).await;
                assert_eq!(answer["active"], true, "grant {g}, refresh {i}: {answer}");
            }
            (g, tokens)
        });
    }
    while let Some(finished) = refreshers.join_next().await {
        let (g, tokens) = finished.unwrap();
        held[g] = tokens;
    }
    done.store(true, Ordering::Relaxed);
    logging_in.await.unwrap();
    logins.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_refreshes_leave_redis_and_tether_where_they_were() {
    let replicas = Arc::new(Replicas::start(2, options()).await);
    let mut redis =
        ::redis::Client::open(replicas.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let client = replicas.client(0).await;
    let mut held = Vec::new();
    for k in 0..GRANTS {
        held.push(replicas.flow(&client, &format!("soaked-{k}"), k).await);
    }
    let soaked: Vec<String> = held
        .iter()
        .map(|t| jwt_claims(t["access_token"].as_str().unwrap())["gid"].as_str().unwrap().to_owned())
        .collect();
    let n = refreshes_per_phase();

    // The first phase fills what is bounded by design (connection pools, the verified-token
    // cache, Redis's script cache); the second must add nothing but the new logins' records.
    let warm_logins = phase(&replicas, &client, &mut held, n, "warm").await;
    let before = Snapshot::take(&replicas, &mut redis).await;
    let logins = phase(&replicas, &client, &mut held, n, "soak").await;
    let after = Snapshot::take(&replicas, &mut redis).await;
    eprintln!(
        "{GRANTS} grants x {n} refreshes x 2 phases; logins {warm_logins} + {logins}; keys {} -> {}; \
         used_memory {} -> {}; rss KiB {:?} -> {:?}; kinds {:?}",
        before.keys.len(),
        after.keys.len(),
        before.used_memory,
        after.used_memory,
        before.rss_kib,
        after.rss_kib,
        after.count()
    );
    assert!(logins > 0, "no login ran alongside the refreshes");

    // The soaked grants: the same keys, the same size.
    for grant in &soaked {
        let theirs = |s: &Snapshot| -> Vec<(String, u64)> {
            s.keys
                .iter()
                .filter(|(k, _)| k.contains(&format!("{{{grant}}}")))
                .map(|(k, (_, size))| (k.clone(), *size))
                .collect()
        };
        let (was, is) = (theirs(&before), theirs(&after));
        assert_eq!(
            was.iter().map(|k| &k.0).collect::<Vec<_>>(),
            is.iter().map(|k| &k.0).collect::<Vec<_>>(),
            "grant {grant}'s keys"
        );
        for ((key, then), (_, now)) in was.iter().zip(&is) {
            assert!(now.abs_diff(*then) <= 16, "{key}: {then} -> {now} bytes after {n} refreshes");
        }
    }

    // Every key the second phase added belongs to one of its logins: a login keeps its grant,
    // its browser's binding, its code's replay marker and its family's successor; nothing per
    // refresh.
    let new: BTreeSet<&String> = after.keys.keys().filter(|k| !before.keys.contains_key(*k)).collect();
    let mut new_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for key in &new {
        *new_kinds.entry(kind(key)).or_default() += 1;
    }
    // A new user also brings their own listings (by user and by upstream account), their
    // connection (tokens and grant list), a sign-in session and their recent-activity list.
    let per_login = [
        "test:v1:link:{}",
        "test:v1:link-grants:{}",
        "test:v1:login:{}",
        "test:v1:activity:{}",
        "test:v1:grant:{}",
        "test:v1:browser:{}",
        "test:v1:code:{}:used",
        "test:v1:next:{}",
        "test:v1:idx:user:{}",
        "test:v1:idx:account:{}",
    ];
    for (k, count) in &new_kinds {
        assert!(per_login.contains(&k.as_str()), "{count} new keys of kind {k} ({GRANTS} grants, {logins} logins)");
        assert!(*count <= logins, "{count} new keys of kind {k} for {logins} logins");
    }
    assert!(!after.count().keys().any(|k| k.contains(":refresh:")), "a record per refresh token: {:?}", after.count());

    // The audit trail grew by the logins' events, not by the refreshes': routine refreshes and
    // credential releases are one event per grant and interval.
    let events = |s: &Snapshot| s.stream_len;
    let added = events(&after) - events(&before);
    assert!(added <= 10 * logins as u64, "{added} audit events for {logins} logins and {} refreshes", GRANTS * n);

    // Redis's memory grew by the new keys and the trail's new events, not by anything else.
    let new_bytes: u64 = new.iter().map(|k| after.keys[*k].1).sum();
    let trail = |s: &Snapshot| s.keys.get("test:v1:audit").map_or(0, |(_, size)| *size);
    let growth = after
        .used_memory
        .saturating_sub(before.used_memory)
        .saturating_sub(trail(&after).saturating_sub(trail(&before)));
    let allowance = new_bytes + 128 * new.len() as u64 + 256 * 1024;
    assert!(growth <= allowance, "Redis grew {growth} bytes; the {} new keys account for {new_bytes}", new.len());

    // Tether's memory stayed where the first phase left it.
    for (i, (was, is)) in before.rss_kib.iter().zip(&after.rss_kib).enumerate() {
        assert!(*was > 0 && *is > 0, "replica {i}: no RSS reading");
        assert!(*is <= was + was / 10 + 2048, "replica {i}: RSS {was} KiB -> {is} KiB over {n} refreshes each");
    }

    // Every record has a lifetime, and no longer than its kind's design.
    let limit = |kind: &str| -> i64 {
        match kind {
            "test:v1:next:{}" => GRACE_SECS as i64,
            "test:v1:code:{}" => CODE_SECS,
            "test:v1:code:{}:used" | "test:v1:pending:{}" | "test:v1:consent:{}" => AUTHORIZATION_SECS,
            "test:v1:lock:{}" => 30,
            "test:v1:grant:{}" | "test:v1:browser:{}" => REFRESH_SECS,
            // A connection lives as long as the grants on it can, tombstones included.
            "test:v1:link:{}" | "test:v1:link-grants:{}" => REFRESH_SECS + TOMBSTONE_SECS,
            "test:v1:login:{}" => SESSION_SECS,
            // The resources configured, to notice one removed (renewed at every start).
            "test:v1:resources" => REFRESH_SECS + TOMBSTONE_SECS,
            // Listings outlive their newest grant by a tombstone's life.
            listing if listing.starts_with("test:v1:idx:") => REFRESH_SECS + TOMBSTONE_SECS,
            // The trail, and each person's list of their recent events in it.
            "test:v1:audit" | "test:v1:activity:{}" => AUDIT_SECS,
            // Dynamic clients in use, and the index of live ones that expires with the last.
            "test:v1:client:{}" => CLIENT_SECS,
            "test:v1:{}:live" => CLIENT_SECS + 1,
            hour if hour.starts_with("test:v1:{}:hour:") => 3600,
            other => panic!("no designed lifetime known for keys of kind {other}"),
        }
    };
    for (key, (ttl, _)) in &after.keys {
        assert!(*ttl >= 0, "{key} never expires");
        assert!(*ttl <= limit(&kind(key)) * 1000, "{key} lives {ttl} ms");
    }

    // Once the grace window has passed, the successors are gone: only records that live as
    // long as a grant, and the flows' short-lived markers, remain.
    tokio::time::sleep(Duration::from_millis(GRACE_SECS * 1000 + 500)).await;
    let later = Snapshot::take(&replicas, &mut redis).await;
    let lingering: Vec<&String> =
        later.keys.keys().filter(|k| kind(k) == "test:v1:next:{}" || kind(k) == "test:v1:lock:{}").collect();
    assert!(lingering.is_empty(), "past their lifetime: {lingering:?}");
    for held in &held {
        assert_eq!(replicas[0].introspect(held["access_token"].as_str().unwrap()).await["active"], true);
    }
}
