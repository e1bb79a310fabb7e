//! Key rotation, as an operator does it: `tether keys rotate` computes each stage's key
//! lists, replicas restart one at a time (old and new lists serve side by side), `tether keys
//! reseal` moves every grant to the new encryption key, and live tokens keep working at every
//! step without anyone signing in again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Runs `tether` with only the given environment.
fn tether(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("cannot run tether")
}

fn key_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("TETHER__KEYS__ENCRYPTION_FILE", dir.join("encryption").display().to_string()),
        ("TETHER__KEYS__SIGNING_FILE", dir.join("signing").display().to_string()),
    ]
}

/// One rotation step with the real command: the key lists of `from`, changed by `step` for
/// `kind`, written to a new directory (the other list is copied).
fn rotate(root: &Path, from: &Path, kind: &str, step: &str, name: &str) -> PathBuf {
    let out = tether(&["keys", "rotate", kind, step, "--value-only"], &key_env(from));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keys rotate {kind} {step}: {stderr}");
    let value = String::from_utf8(out.stdout).unwrap();
    assert!(!stderr.contains(value.trim()), "the guidance must not repeat the key material");
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["encryption", "signing"] {
        let text = if file == kind { value.clone() } else { std::fs::read_to_string(from.join(file)).unwrap() };
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// Key ids of a list file, in order (published ones keep their `+`).
fn ids(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .split(',')
        .map(|item| item.split_once(':').unwrap().0.to_owned())
        .collect()
}

fn kid(token: &str) -> String {
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.get_json("/.well-known/jwks.json").await;
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// The encryption key a grant's upstream tokens are sealed under, read from Redis.
async fn sealed_under(cluster: &TestCluster, access_token: &str) -> String {
    let gid = jwt_claims(access_token)["gid"].as_str().unwrap().to_owned();
    let client = ::redis::Client::open(cluster.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let blob: Vec<u8> =
        ::redis::cmd("HGET").arg(common::link_key(&gid)).arg("up").query_async(&mut conn).await.unwrap();
    tether::crypto::seal::KeyRing::sealed_with(&blob).unwrap().to_owned()
}

/// Introspects on `app` and returns the upstream access token (panics when inactive).
async fn upstream_via(app: &TestApp, access_token: &str, case: &str) -> String {
    let answer = app.introspect(access_token).await;
    assert_eq!(answer["active"], true, "{case}: {answer}");
    answer["upstream"]["access_token"].as_str().unwrap().to_owned()
}

/// A live session: a client's current tokens and the upstream token behind them.
struct Session {
    client: TestClient,
    access: String,
    refresh: String,
    upstream: String,
}

impl Session {
    async fn refresh_on(&mut self, app: &TestApp, case: &str) {
        let response = app.refresh(&self.client, &self.refresh).await;
        assert_eq!(response.status(), 200, "{case}: refresh");
        let tokens: Value = response.json().await.unwrap();
        self.access = tokens["access_token"].as_str().unwrap().to_owned();
        self.refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    }
}

async fn session(app: &TestApp, user: &str) -> Session {
    let client = app.register_client("none").await;
    let tokens = app.tokens_for(&client, user).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let upstream = upstream_via(app, &access, "a new session").await;
    Session { client, access, refresh: tokens["refresh_token"].as_str().unwrap().to_owned(), upstream }
}

fn reseal(cluster: &TestCluster, keys: &Path, dry_run: bool) -> String {
    let mut env = key_env(keys);
    env.extend([
        ("TETHER__STORE__KIND", "redis".to_owned()),
        ("TETHER__STORE__URL", cluster.redis.url()),
        ("TETHER__STORE__PREFIX", "test".to_owned()),
    ]);
    let args: &[&str] = if dry_run { &["keys", "reseal", "--dry-run"] } else { &["keys", "reseal"] };
    let out = tether(args, &env);
    assert!(out.status.success(), "keys reseal: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_keys_rotate_through_publish_activate_and_retire_with_live_tokens_and_no_new_login() {
    let root = tempfile::tempdir().unwrap();
    let start = tempfile::tempdir().unwrap();
    std::fs::write(start.path().join("encryption"), tether::crypto::seal::KeyRing::generate_spec("enc-1")).unwrap();
    std::fs::write(start.path().join("signing"), tether::crypto::signing::SigningKeys::generate_spec("sig-1").unwrap())
        .unwrap();
    let stage0 = start.path().to_path_buf();
    let mut cluster = TestCluster::spawn_with_keys(2, Options::default(), start).await;
    // Alice uses her session throughout; Bob does not touch his until the end.
    let mut alice = session(&cluster.apps[0], "alice").await;
    let mut bob = session(&cluster.apps[0], "bob").await;
    assert_eq!(kid(&alice.access), "sig-1");

    // 1. Publish: a new key in both lists, first on one replica, then on the other.
    let stage1 = rotate(root.path(), &stage0, "signing", "publish", "1a");
    let stage1 = rotate(root.path(), &stage1, "encryption", "publish", "1");
    let published = |file| ids(&stage1, file)[1].strip_prefix('+').expect("marked published").to_owned();
    let (sig2, enc2) = (published("signing"), published("encryption"));
    assert_eq!(ids(&stage1, "signing")[0], "sig-1", "publishing keeps the active key");
    cluster.restart(1, &stage1).await;
    assert_eq!(jwks_kids(&cluster.apps[1]).await, vec!["sig-1".to_owned(), sig2.clone()], "published before it signs");
    for (i, app) in cluster.apps.iter().enumerate() {
        assert_eq!(upstream_via(app, &alice.access, &format!("publish, replica {i}")).await, alice.upstream);
    }
    alice.refresh_on(&cluster.apps[1], "publish").await;
    assert_eq!(kid(&alice.access), "sig-1", "a published key does not sign yet");
    assert_eq!(upstream_via(&cluster.apps[0], &alice.access, "publish, old replica").await, alice.upstream);
    assert_eq!(sealed_under(&cluster, &alice.access).await, "enc-1");
    cluster.restart(0, &stage1).await;

    // 2. Activate: the new keys sign and seal, while a replica still on stage 1 serves.
    let stage2 = rotate(root.path(), &stage1, "signing", "activate", "2a");
    let stage2 = rotate(root.path(), &stage2, "encryption", "activate", "2");
    assert_eq!(ids(&stage2, "signing"), vec![sig2.clone(), "sig-1".to_owned()]);
    cluster.restart(1, &stage2).await;
    assert_eq!(upstream_via(&cluster.apps[1], &alice.access, "activate, new replica").await, alice.upstream);
    assert_eq!(sealed_under(&cluster, &alice.access).await, enc2, "re-sealed under the active key when read");
    assert_eq!(
        upstream_via(&cluster.apps[0], &alice.access, "activate, stage-1 replica opens the re-sealed grant").await,
        alice.upstream
    );
    alice.refresh_on(&cluster.apps[1], "activate").await;
    assert_eq!(kid(&alice.access), sig2, "the activated key signs");
    assert_eq!(
        upstream_via(&cluster.apps[0], &alice.access, "activate, stage-1 replica verifies the new key").await,
        alice.upstream
    );
    cluster.restart(0, &stage2).await;
    // Bob's grant was never read: `tether keys reseal` moves it (and reports what it did).
    assert_eq!(sealed_under(&cluster, &bob.access).await, "enc-1");
    let dry = reseal(&cluster, &stage2, true);
    assert!(dry.starts_with("2 grants: 1 to re-seal"), "{dry}");
    assert_eq!(sealed_under(&cluster, &bob.access).await, "enc-1", "a dry run writes nothing");
    let report = reseal(&cluster, &stage2, false);
    assert!(report.starts_with("2 grants: 1 re-sealed") && report.contains("1 already under it"), "{report}");
    assert_eq!(sealed_under(&cluster, &bob.access).await, enc2);

    // 3. Retire, after the longest access-token lifetime: tokens signed by the old key are gone.
    cluster.advance(606);
    let stage3 = rotate(root.path(), &stage2, "signing", "retire", "3a");
    let stage3 = rotate(root.path(), &stage3, "encryption", "retire", "3");
    assert_eq!((ids(&stage3, "signing"), ids(&stage3, "encryption")), (vec![sig2.clone()], vec![enc2.clone()]));
    cluster.restart(1, &stage3).await;
    cluster.restart(0, &stage3).await;
    assert_eq!(jwks_kids(&cluster.apps[0]).await, vec![sig2.clone()]);
    for (name, session) in [("alice", &mut alice), ("bob", &mut bob)] {
        session.refresh_on(&cluster.apps[0], &format!("retire, {name}")).await;
        for (i, app) in cluster.apps.iter().enumerate() {
            let case = format!("retire, {name} on replica {i}");
            assert_eq!(
                upstream_via(app, &session.access, &case).await,
                session.upstream,
                "same upstream grant: no new login"
            );
        }
    }
    // And a new user signs in with the new keys alone.
    let carol = session(&cluster.apps[0], "carol").await;
    assert_eq!((kid(&carol.access), sealed_under(&cluster, &carol.access).await), (sig2, enc2));
}
