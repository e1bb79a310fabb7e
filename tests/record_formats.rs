//! The two record formats (`store.write_schema`) side by side on real Redis: replicas writing
//! either format serve the same grants, `tether store migrate` rewrites them either way while
//! Tether serves (one server and a three-primary Cluster), and no grant is lost or resurrected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tether::store::*;

const TTL: Duration = Duration::from_secs(600);
const LINK: &str = "0123456789abcdef01234567";

fn grant_of(tokens: &Value) -> String {
    jwt_claims(tokens["access_token"].as_str().unwrap())["gid"].as_str().unwrap().to_owned()
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}

/// The format a grant's record and its connection's record are stored in, read from Redis.
fn formats(redis: &RedisServer, grant: &str) -> (u8, u8) {
    let format = |key: &str| {
        let fields = redis.cli(&["HKEYS", key]);
        match (fields.lines().any(|f| f == "rec"), fields.lines().any(|f| f == "r0")) {
            (true, false) => 1,
            (false, true) => 2,
            _ => panic!("{key} holds {fields:?}"),
        }
    };
    (format(&grant_key(grant)), format(&link_key(grant)))
}

/// What each replica says of each token: active (with the upstream token) or not.
async fn states(cluster: &TestCluster, tokens: &[(&str, &Value)]) -> Vec<String> {
    let mut seen = Vec::new();
    for (who, t) in tokens {
        for (i, app) in cluster.apps.iter().enumerate() {
            let answer = app.introspect(access(t)).await;
            let state = match (&answer["active"], &answer["upstream"]["access_token"]) {
                (Value::Bool(true), Value::String(_)) => "active",
                (Value::Bool(false), _) => "inactive",
                _ => panic!("{who} via {i}: {answer}"),
            };
            seen.push(format!("{who}:{state}"));
        }
    }
    seen.dedup();
    seen
}

async fn refreshed(app: &TestApp, client: &TestClient, token: &str) -> Value {
    let response = app.refresh(client, token).await;
    assert_eq!(response.status(), 200, "refresh");
    response.json().await.unwrap()
}

/// A store on the cluster's Redis writing `schema`, for the migration.
fn store(cluster: &TestCluster, schema: WriteSchema) -> RedisStore {
    RedisStore::connect(&RedisTarget::standalone(&cluster.redis.url()), "test", Duration::from_secs(2))
        .unwrap()
        .with_write_schema(schema)
}

async fn migrate(store: &RedisStore, dry_run: bool) -> MigrationReport {
    let (mut report, mut cursor) = (MigrationReport::default(), 0);
    loop {
        cursor = store.migrate_page(cursor, dry_run, &mut report).await.unwrap();
        if cursor == 0 {
            return report;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_writing_either_format_and_migrations_both_ways_while_they_serve_lose_and_resurrect_nothing() {
    // Upstream tokens that expire within minutes, so that introspection refreshes them.
    let options = Options { upstream_ttl: Some(Duration::from_secs(120)), ..Options::default() };
    let mut cluster = TestCluster::spawn(2, options).await;
    let client = cluster.apps[0].register_client("none").await;
    let other = cluster.apps[0].register_client("none").await;

    // Both replicas run this version and write format 1 (the first step of an upgrade).
    let ada = cluster.apps[0].tokens_for(&client, "ada").await;
    let cy = cluster.apps[0].tokens_for(&client, "cy").await;
    assert_eq!(formats(&cluster.redis, &grant_of(&ada)), (1, 1));

    // Instance 0 now writes format 2, instance 1 still format 1. Browser flows go through 0.
    cluster.restart_with_store(0, "write_schema = 2").await;
    let bea = cluster.apps[0].tokens_for(&client, "bea").await;
    assert_eq!(formats(&cluster.redis, &grant_of(&bea)), (2, 2));
    assert_eq!(cluster.redis.cli(&["HGET", &link_key(&grant_of(&bea)), "st"]).trim(), "active");
    // A second client of ada's, through the format-2 replica: her connection (format 1, its grants
    // in a set) is rewritten in format 2 with both grants listed in it, and the set is gone.
    let ada2 = cluster.apps[0].tokens_for(&other, "ada").await;
    assert_eq!(formats(&cluster.redis, &grant_of(&ada2)), (2, 2));
    assert_eq!(formats(&cluster.redis, &grant_of(&ada)).1, 2);
    let set = link_key(&grant_of(&ada)).replace(":link:", ":link-grants:");
    assert_eq!(cluster.redis.cli(&["EXISTS", &set]).trim(), "0", "the set moved into the connection");
    let all = [("ada", &ada), ("ada2", &ada2), ("bea", &bea), ("cy", &cy)];
    assert_eq!(states(&cluster, &all).await, ["ada:active", "ada2:active", "bea:active", "cy:active"]);

    // Refresh across the replicas, with grace and with reuse: bea's family advances through the
    // format-1 replica, the same token again within the grace window (through the other) gets
    // the same pair, and once the window has passed it is reuse and ends her grant everywhere.
    let bea_next = refreshed(&cluster.apps[1], &client, refresh_token(&bea)).await;
    let retried = refreshed(&cluster.apps[0], &client, refresh_token(&bea)).await;
    assert_eq!(refresh_token(&retried), refresh_token(&bea_next), "a retry within the grace window");
    cluster.advance(31);
    let body =
        expect_error(cluster.apps[0].refresh(&client, refresh_token(&bea)).await, 400, "invalid_grant", "reuse").await;
    assert!(body["error_description"].as_str().unwrap().contains("already used"), "{body}");
    assert_eq!(cluster.apps[1].introspect(access(&bea_next)).await, json!({"active": false}));

    // The upstream token expires: the format-1 replica refreshes it into ada's format-2
    // connection; the other reads the same new token.
    let before = cluster.apps[0].introspect(access(&ada)).await["upstream"]["access_token"].clone();
    cluster.advance(200);
    let through_1 = cluster.apps[1].introspect(access(&ada2)).await;
    let through_0 = cluster.apps[0].introspect(access(&ada)).await;
    assert_ne!(through_1["upstream"]["access_token"], before, "{through_1}");
    assert_eq!(through_0["upstream"]["access_token"], through_1["upstream"]["access_token"]);

    // Revocation by either: ada's second grant through the format-1 replica leaves her first one
    // working (they share the connection); cy's format-1 grant through the format-2 replica ends.
    assert_eq!(cluster.apps[1].revoke(&other, refresh_token(&ada2)).await.status(), 200);
    assert_eq!(cluster.apps[0].revoke(&client, refresh_token(&cy)).await.status(), 200);
    let all = [("ada", &ada), ("ada2", &ada2), ("bea", &bea_next), ("cy", &cy)];
    let expected = ["ada:active", "ada2:inactive", "bea:inactive", "cy:inactive"];
    assert_eq!(states(&cluster, &all).await, expected);

    // The migration to format 2 while both replicas serve: a refresh chain and introspection
    // run throughout; none may fail.
    let dan = cluster.apps[0].tokens_for(&client, "dan").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (failures, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, failures, calls) = (stop.clone(), failures.clone(), calls.clone());
        let (tether, client, mut tokens) = (cluster.apps[1].tether.clone(), client.clone(), dan.clone());
        let ada = access(&ada).to_owned();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = tether.introspect(&ada).await;
                let response = tether.refresh(&client, refresh_token(&tokens)).await;
                calls.fetch_add(2, Ordering::Relaxed);
                if answer["active"] != true || response.status() != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                tokens = response.json().await.unwrap();
            }
            tokens
        })
    };
    let v2 = store(&cluster, WriteSchema::V2);
    let dry = migrate(&v2, true).await;
    // Format 1: ada's and cy's grants, cy's connection, and ada's connection's tokens (refreshed
    // by the format-1 replica into her format-2 connection).
    assert_eq!((dry.grants, dry.connections, dry.raced), (2, 2, 0), "{dry:?}");
    assert_eq!(formats(&cluster.redis, &grant_of(&cy)).0, 1, "a dry run changes nothing");
    let done = migrate(&v2, false).await;
    assert_eq!((done.grants, done.connections), (dry.grants, dry.connections), "{done:?} vs dry {dry:?}");
    let again = migrate(&v2, true).await;
    assert_eq!((again.grants, again.connections, again.raced), (0, 0, 0), "{again:?}");
    while calls.load(Ordering::Relaxed) < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let dan = load.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {} calls during the migration", calls.load(Ordering::Relaxed));
    for (who, t) in [("ada", &ada), ("cy", &cy), ("dan", &dan)] {
        assert_eq!(formats(&cluster.redis, &grant_of(t)), (2, 2), "{who}");
    }
    let all = [("ada", &ada), ("ada2", &ada2), ("bea", &bea_next), ("cy", &cy), ("dan", &dan)];
    let expected = ["ada:active", "ada2:inactive", "bea:inactive", "cy:inactive", "dan:active"];
    assert_eq!(states(&cluster, &all).await, expected);

    // Rolling back to format 1: both replicas write it again and a migration rewrites every
    // record back; nothing changes for anyone.
    cluster.restart_with_store(0, "write_schema = 1").await;
    let back = migrate(&store(&cluster, WriteSchema::V1), false).await;
    assert_eq!((back.grants, back.connections), (5, 4), "every grant and connection: {back:?}");
    for (who, t) in [("ada", &ada), ("cy", &cy), ("dan", &dan)] {
        assert_eq!(formats(&cluster.redis, &grant_of(t)), (1, 1), "{who}");
    }
    assert_eq!(states(&cluster, &all).await, expected);
    let dan = refreshed(&cluster.apps[0], &client, refresh_token(&dan)).await;
    assert_eq!(cluster.apps[1].introspect(access(&dan)).await["active"], true);
}

/// A connection with four grants (one revoked, one with a refresh family) and a grant made
/// before connections, written in format 1.
async fn stored_in_format_1(store: &RedisStore) -> Vec<String> {
    let tokens: Vec<u8> = (0..300u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
    store.put_link(&sample_link(LINK, &tokens), TTL).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..4u32 {
        let mut grant = GrantRecord::new(
            format!("{LINK}-{n:032x}"),
            GrantInfo {
                subject: "42".into(),
                client_id: format!("client-{n}"),
                resource: "https://mcp.example.com/mcp".into(),
                provider: "dev".into(),
                scope: vec!["files:read".into()],
                offline: true,
                created_at: 1_800_000_000,
                account: Some("octocat".into()),
                client_name: Some("Claude".into()),
                ..GrantInfo::default()
            },
            Vec::new(),
        );
        if n == 1 {
            grant.family =
                Some(RefreshFamily { generation: 3, current: "c".repeat(43), previous: None, rotated_at: None });
        }
        store.put_grant(&grant, TTL).await.unwrap();
        ids.push(grant.id);
    }
    let tomb = Tombstone { at: 5, by: "user".into(), reason: "user".into() };
    assert_eq!(store.revoke_grant(&ids[3], &tomb, TTL).await.unwrap(), Revoked::Shared);
    let own = GrantRecord::new(
        "f".repeat(32),
        GrantInfo { client_id: "old".into(), ..GrantInfo::default() },
        b"own".to_vec(),
    );
    store.put_grant(&own, TTL).await.unwrap();
    ids.push(own.id);
    ids
}

/// Every record as the store reads it.
async fn read_all(store: &RedisStore, ids: &[String]) -> (Option<LinkRecord>, Vec<String>, Vec<Option<GrantRecord>>) {
    let mut grants = Vec::new();
    for id in ids {
        grants.push(store.grant(id).await.unwrap());
    }
    (store.link(LINK).await.unwrap(), store.link_grants(LINK).await.unwrap(), grants)
}

async fn a_migration_rewrites_every_record_either_way_and_reads_stay_the_same(
    v1: RedisStore,
    v2: RedisStore,
    encoding: impl Fn(&str) -> String,
) {
    let ids = stored_in_format_1(&v1).await;
    let before = read_all(&v1, &ids).await;
    assert_eq!(before.1.len(), 3, "the revoked grant left its connection's list: {:?}", before.1);
    assert_eq!(encoding(&format!("test:v1:grant:{{{LINK}}}-{:032x}", 0)), "hashtable");

    let dry = migrate(&v2, true).await;
    assert_eq!((dry.grants, dry.connections, dry.current), (5, 1, 0), "{dry:?}");
    assert_eq!(migrate(&v2, true).await, dry, "a dry run changes nothing");
    let done = migrate(&v2, false).await;
    assert_eq!((done.grants, done.connections, done.raced), (5, 1, 0), "{done:?}");
    assert_eq!(read_all(&v1, &ids).await, before, "read by a replica writing format 1");
    assert_eq!(read_all(&v2, &ids).await, before, "read by a replica writing format 2");
    // Compact at Redis's default settings; the grant made before connections keeps its own
    // tokens in one field (longer than 64 bytes would not be compact either way).
    assert_eq!(encoding(&format!("test:v1:grant:{{{LINK}}}-{:032x}", 1)), "listpack");
    assert_eq!(encoding(&format!("test:v1:link:{{{LINK}}}")), "listpack");
    assert_eq!(encoding(&format!("test:v1:link-grants:{{{LINK}}}")), "", "the set moved into the connection");
    let again = migrate(&v2, false).await;
    assert_eq!((again.grants, again.connections, again.current), (0, 0, 6), "{again:?}");

    // Everything still works on migrated records: a revocation of the last live grants ends the
    // connection, once.
    let tomb = Tombstone { at: 6, by: "admin:ops".into(), reason: "admin".into() };
    assert_eq!(v1.revoke_grant(&ids[0], &tomb, TTL).await.unwrap(), Revoked::Shared);
    assert_eq!(v2.revoke_grant(&ids[1], &tomb, TTL).await.unwrap(), Revoked::Shared);
    let after = read_all(&v2, &ids).await;
    let back = migrate(&v1, false).await;
    assert_eq!((back.grants, back.connections), (5, 1), "{back:?}");
    assert_eq!(read_all(&v2, &ids).await, after, "back in format 1, read the same");
    assert_eq!(encoding(&format!("test:v1:link-grants:{{{LINK}}}")), "hashtable", "the list is a set again");
    assert_eq!(v2.revoke_grant(&ids[2], &tomb, TTL).await.unwrap(), Revoked::Last);
    let ended = v1.link(LINK).await.unwrap().unwrap();
    assert_eq!((ended.status, ended.upstream.is_empty()), (LinkStatus::Ended, true));
}

/// A migration racing writers: a connection's tokens replaced over and over while its records
/// are rewritten both ways. Every write is read back as written until the next one: a
/// migration that read the record before a write never puts the older tokens back.
async fn a_migration_never_undoes_a_write_made_while_it_runs(v1: RedisStore, v2: RedisStore) {
    let ids = stored_in_format_1(&v1).await;
    let (v1, v2) = (Arc::new(v1), Arc::new(v2));
    let writer = {
        let (store, grant) = (v1.clone(), ids[0].clone());
        tokio::spawn(async move {
            let mut undone = Vec::new();
            for n in 0..600u32 {
                let tokens = format!("tokens-{n}-{}", "x".repeat(usize::try_from(n % 200).unwrap())).into_bytes();
                assert!(store.set_grant_upstream(&grant, &tokens).await.unwrap());
                let read = store.grant(&grant).await.unwrap().unwrap().upstream;
                if read != tokens {
                    undone.push((n, String::from_utf8_lossy(&read).chars().take(12).collect::<String>()));
                }
            }
            undone
        })
    };
    let (mut raced, mut rounds) = (0, 0);
    while !writer.is_finished() {
        raced += migrate(&v2, false).await.raced + migrate(&v1, false).await.raced;
        rounds += 1;
    }
    let undone = writer.await.unwrap();
    assert!(
        undone.is_empty(),
        "writes undone by {rounds} migration rounds ({raced} records changed while read): {undone:?}"
    );
    assert!(rounds > 10, "only {rounds} migration rounds ran during the writes");
}

fn standalone(redis: &RedisServer, schema: WriteSchema) -> RedisStore {
    RedisStore::connect(&RedisTarget::standalone(&redis.url()), "test", Duration::from_secs(2))
        .unwrap()
        .with_write_schema(schema)
}

fn on_cluster(cluster: &RedisCluster, schema: WriteSchema) -> RedisStore {
    RedisStore::connect(&RedisTarget::new(Topology::Cluster, &cluster.url()), "test", Duration::from_secs(2))
        .unwrap()
        .with_write_schema(schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_on_one_server_rewrites_every_record_either_way() {
    let redis = RedisServer::start();
    let encoding = |key: &str| redis.cli(&["OBJECT", "ENCODING", key]).trim().to_owned();
    a_migration_rewrites_every_record_either_way_and_reads_stay_the_same(
        standalone(&redis, WriteSchema::V1),
        standalone(&redis, WriteSchema::V2),
        encoding,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_on_a_cluster_rewrites_every_record_either_way() {
    let cluster = RedisCluster::start();
    let encoding =
        |key: &str| cluster.nodes[cluster.primary_of(key)].cli(&["OBJECT", "ENCODING", key]).trim().to_owned();
    a_migration_rewrites_every_record_either_way_and_reads_stay_the_same(
        on_cluster(&cluster, WriteSchema::V1),
        on_cluster(&cluster, WriteSchema::V2),
        encoding,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_on_one_server_never_undoes_a_concurrent_write() {
    let redis = RedisServer::start();
    a_migration_never_undoes_a_write_made_while_it_runs(
        standalone(&redis, WriteSchema::V1),
        standalone(&redis, WriteSchema::V2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_on_a_cluster_never_undoes_a_concurrent_write() {
    let cluster = RedisCluster::start();
    a_migration_never_undoes_a_write_made_while_it_runs(
        on_cluster(&cluster, WriteSchema::V1),
        on_cluster(&cluster, WriteSchema::V2),
    )
    .await;
}

/// `tether store migrate` as an operator runs it: a dry run counts, the run rewrites and says
/// so, a record it cannot read is counted, left as it is and makes the exit status 1, and a
/// second run finds everything in the format.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_migrate_command_reports_what_it_did_and_leaves_what_it_cannot_read() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tether.toml");
    let store_lines =
        format!("[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"test\"\nwrite_schema = 2\n", redis.url());
    std::fs::write(&config, store_lines).unwrap();
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tether"));
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        let out = command.arg("--config").arg(&config).args(["store", "migrate"]).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    stored_in_format_1(&standalone(&redis, WriteSchema::V1)).await;
    let damaged = "test:v1:grant:{damaged}";
    redis.cli(&["HSET", damaged, "rec", "{not a record", "st", "active"]);

    let (code, out, err) = run(&["--dry-run"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("record format 2: 5 grants and 1 connections to rewrite, 0 already in it"), "{out}");
    assert!(out.contains("1 unreadable"), "{out}");
    assert_eq!(redis.cli(&["HEXISTS", &grant_key(&format!("{LINK}-{:032x}", 0)), "rec"]).trim(), "1", "dry");
    let (code, out, _) = run(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("5 grants and 1 connections rewritten"), "{out}");
    assert_eq!(redis.cli(&["HGET", damaged, "rec"]).trim(), "{not a record", "left as it was");
    redis.cli(&["DEL", damaged]);
    let (code, out, _) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 grants and 0 connections rewritten, 6 already in it"), "{out}");
    let (code, _, err) = run(&["--cursor", "not-a-number"]);
    assert_eq!(code, Some(2), "{err}");
}
