//! One contract, three stores: every test here runs against `MemoryStore`, `RedisStore` on one
//! server and `RedisStore` on a three-primary Redis Cluster, the Redis ones writing each record
//! format (`store.write_schema` 1 and 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisCluster, RedisServer};
use tether::clock::{Clock, ManualClock};
use tether::store::*;

/// A store under test and a way to let time pass for it.
struct Subject {
    store: Arc<dyn Store>,
    clock: ManualClock,
    /// The Redis server or cluster behind the store, stopped when the subject is dropped.
    _redis: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Subject {
    fn memory() -> Self {
        let clock = ManualClock::starting_at(1_800_000_000);
        Self { store: Arc::new(MemoryStore::new(Arc::new(clock.clone()))), clock, _redis: None }
    }

    fn redis(schema: WriteSchema) -> Self {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&RedisTarget::standalone(&redis.url()), "contract", Duration::from_secs(2))
            .unwrap()
            .with_write_schema(schema);
        Self { store: Arc::new(store), clock: ManualClock::starting_at(0), _redis: Some(Box::new(redis)) }
    }

    /// A three-primary Redis Cluster, reached through two seed nodes.
    fn cluster(schema: WriteSchema) -> Self {
        let cluster = RedisCluster::start();
        let target = RedisTarget::new(Topology::Cluster, &cluster.url());
        let store = RedisStore::connect(&target, "contract", Duration::from_secs(2)).unwrap().with_write_schema(schema);
        Self { store: Arc::new(store), clock: ManualClock::starting_at(0), _redis: Some(Box::new(cluster)) }
    }

    /// The store's notion of now: the manual clock, or Redis's (wall) time.
    fn now(&self) -> i64 {
        if self._redis.is_some() { tether::clock::SystemClock.now() } else { self.clock.now() }
    }

    /// Lets `secs` seconds pass: the memory store's clock moves; Redis expires in real time.
    async fn elapse(&self, secs: u64) {
        if self._redis.is_some() {
            tokio::time::sleep(Duration::from_millis(secs * 1000 + 200)).await;
        } else {
            self.clock.advance(i64::try_from(secs).unwrap());
        }
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Subject::memory()).await; } )* }
        mod redis { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Subject::redis(tether::store::WriteSchema::V1)).await; } )* }
        mod redis_cluster { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Subject::cluster(tether::store::WriteSchema::V1)).await; } )* }
        mod redis_v2 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Subject::redis(tether::store::WriteSchema::V2)).await; } )* }
        mod redis_cluster_v2 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Subject::cluster(tether::store::WriteSchema::V2)).await; } )* }
    };
}

contract!(
    clients_round_trip_and_expire,
    consents_and_pending_requests_are_taken_once,
    codes_are_taken_once_and_then_recognised_as_replays,
    only_one_of_many_concurrent_takers_gets_a_code,
    grants_round_trip_with_binary_upstream_bytes,
    grant_status_and_ttl_change_only_existing_grants,
    refresh_rotation_is_a_compare_and_set,
    the_successor_is_kept_only_for_the_grace_window,
    only_one_of_many_concurrent_rotations_wins,
    a_family_starts_only_in_an_existing_grant_and_round_trips_with_it,
    a_family_advances_only_from_its_current_token,
    a_family_successor_is_kept_only_for_the_grace_window,
    only_one_of_many_concurrent_family_advances_wins,
    a_family_of_a_revoked_grant_does_not_advance,
    a_revoked_grant_keeps_its_first_tombstone_and_loses_its_upstream_tokens,
    grant_use_is_recorded_only_for_grants_that_exist,
    audit_events_are_read_newest_first_in_pages,
    a_persons_recent_events_are_theirs_newest_first_and_few,
    listings_page_newest_first_through_ties_and_drop_what_is_removed,
    store_answers_ping,
    locks_are_exclusive_owned_and_expire,
    grant_upstream_tokens_are_replaced_in_place,
    recently_used_grants_are_listed_and_forgotten,
    browsers_remember_their_latest_grant_per_client_and_resource,
    live_dynamic_clients_are_capped_until_they_lapse_or_go,
    registrations_are_capped_per_hour,
    a_reseal_replaces_upstream_tokens_only_if_unchanged,
    a_scan_lists_every_grant_once_it_has_walked_all_pages,
    connections_are_claimed_and_settled_once_and_sessions_point_at_grants,
    grants_on_a_connection_read_its_tokens_and_status_in_one_call,
    a_connection_outlives_its_grants_and_its_tokens_go_with_its_last_live_grant,
    a_connection_is_created_only_where_there_is_none_or_an_ended_one,
    of_two_grants_revoked_at_once_exactly_one_is_the_last,
    sign_in_sessions_round_trip_and_end,
);

const TTL: Duration = Duration::from_secs(60);

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        source: ClientSource::Dynamic,
        secret_digest: Some("digest".into()),
        registration_token_digest: Some("management".into()),
        issued_at: 1,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        token_endpoint_auth_method: "client_secret_basic".into(),
        grant_types: vec!["authorization_code".into()],
        response_types: vec!["code".into()],
        application_type: Some("native".into()),
        client_name: Some("Name with ünïcödé".into()),
        client_uri: None,
        logo_uri: None,
        tos_uri: None,
        policy_uri: None,
        contacts: vec!["a@b.example".into()],
        scope: Some("files:read".into()),
        software_id: None,
        software_version: None,
    }
}

fn request() -> AuthorizationRecord {
    AuthorizationRecord {
        client_id: "c".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        redirect_uri_sent: true,
        state: Some("s".into()),
        code_challenge: "ch".into(),
        resource: "files".into(),
        scope: vec!["files:read".into(), "files:write".into()],
        requested_scope: vec!["files:read".into()],
        widens: Some("earlier".into()),
        offline: true,
        client_name: Some("Name with ünïcödé".into()),
        client_source: Some(ClientSource::Document),
    }
}

fn code(grant: &str) -> CodeRecord {
    CodeRecord {
        client_id: "c".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        redirect_uri_sent: true,
        code_challenge: "ch".into(),
        resource: "files".into(),
        scope: vec![],
        grant_id: grant.into(),
        issued_at: 1,
    }
}

fn grant(id: &str) -> GrantRecord {
    GrantRecord::new(
        id.into(),
        GrantInfo {
            subject: "42".into(),
            client_id: "c".into(),
            resource: "files".into(),
            provider: "dev".into(),
            scope: vec!["files:read".into()],
            offline: true,
            created_at: 1,
            ..GrantInfo::default()
        },
        vec![1, 0, 255, 254, 10, 13, 0],
    )
}

fn refresh(grant: &str) -> RefreshRecord {
    RefreshRecord {
        grant_id: grant.into(),
        client_id: "c".into(),
        issued_at: 1,
        status: RefreshStatus::Active,
        rotated_at: None,
    }
}

async fn clients_round_trip_and_expire(s: Subject) {
    s.store.put_client(&client("a"), Duration::from_secs(1)).await.unwrap();
    s.store.put_client(&client("kept"), Duration::from_secs(1)).await.unwrap();
    assert_eq!(s.store.client("a").await.unwrap(), Some(client("a")));
    assert_eq!(s.store.client("b").await.unwrap(), None);
    // Touching extends the life of an existing client only.
    assert!(s.store.touch_client("kept", TTL).await.unwrap());
    assert!(!s.store.touch_client("b", TTL).await.unwrap());
    assert_eq!(s.store.client("b").await.unwrap(), None, "touch must not create a client");
    s.elapse(1).await;
    assert_eq!(s.store.client("a").await.unwrap(), None, "a record outlived its TTL");
    assert_eq!(s.store.client("kept").await.unwrap(), Some(client("kept")), "touch did not extend the TTL");
    assert!(s.store.delete_client("kept").await.unwrap());
    assert!(!s.store.delete_client("kept").await.unwrap());
    assert_eq!(s.store.client("kept").await.unwrap(), None);
}

async fn consents_and_pending_requests_are_taken_once(s: Subject) {
    let consent =
        ConsentRecord { request: request(), binding_digest: "b".into(), client_digest: "d".into(), created_at: 1 };
    s.store.put_consent("k", &consent, TTL).await.unwrap();
    assert_eq!(s.store.take_consent("k").await.unwrap(), Some(consent));
    assert_eq!(s.store.take_consent("k").await.unwrap(), None);
    let pending = PendingRecord {
        user: None,
        resume: None,
        account: false,
        reconnect: None,
        request: request(),
        binding_digest: "b".into(),
        provider: "dev".into(),
        upstream_verifier: "v".into(),
        upstream_nonce: Some("n".into()),
        upstream_scopes: vec!["user".into()],
        created_at: 1,
    };
    s.store.put_pending("k", &pending, Duration::from_secs(1)).await.unwrap();
    s.store.put_pending("k2", &pending, TTL).await.unwrap();
    assert_eq!(s.store.take_pending("k2").await.unwrap(), Some(pending));
    assert_eq!(s.store.take_pending("k2").await.unwrap(), None);
    s.elapse(1).await;
    assert_eq!(s.store.take_pending("k").await.unwrap(), None, "expired pending request was taken");
}

async fn codes_are_taken_once_and_then_recognised_as_replays(s: Subject) {
    s.store.put_code("c1", &code("g1"), TTL).await.unwrap();
    assert_eq!(s.store.take_code("c1", TTL).await.unwrap(), CodeTake::Fresh(code("g1")));
    assert_eq!(s.store.take_code("c1", TTL).await.unwrap(), CodeTake::Reused { grant_id: "g1".into() });
    assert_eq!(s.store.take_code("never", TTL).await.unwrap(), CodeTake::Unknown);
    s.store.put_code("c2", &code("g2"), Duration::from_secs(1)).await.unwrap();
    s.elapse(1).await;
    assert_eq!(s.store.take_code("c2", TTL).await.unwrap(), CodeTake::Unknown, "expired code was taken");
}

async fn only_one_of_many_concurrent_takers_gets_a_code(s: Subject) {
    s.store.put_code("race", &code("g"), TTL).await.unwrap();
    let takers = (0..16).map(|_| {
        let store = s.store.clone();
        tokio::spawn(async move { store.take_code("race", TTL).await.unwrap() })
    });
    let mut fresh = 0;
    for taker in takers {
        match taker.await.unwrap() {
            CodeTake::Fresh(_) => fresh += 1,
            CodeTake::Reused { grant_id } => assert_eq!(grant_id, "g"),
            CodeTake::Unknown => panic!("a racing taker saw neither the code nor its replay marker"),
        }
    }
    assert_eq!(fresh, 1);
}

async fn grants_round_trip_with_binary_upstream_bytes(s: Subject) {
    s.store.put_grant(&grant("g1"), TTL).await.unwrap();
    assert_eq!(s.store.grant("g1").await.unwrap(), Some(grant("g1")));
    assert_eq!(s.store.grant("g2").await.unwrap(), None);
    // Writing again replaces the whole record.
    let mut changed = grant("g1");
    changed.upstream = vec![9; 3];
    s.store.put_grant(&changed, TTL).await.unwrap();
    assert_eq!(s.store.grant("g1").await.unwrap(), Some(changed));
}

async fn grant_status_and_ttl_change_only_existing_grants(s: Subject) {
    s.store.put_grant(&grant("g1"), TTL).await.unwrap();
    assert!(s.store.set_grant_status("g1", GrantStatus::Revoked).await.unwrap());
    assert_eq!(s.store.grant("g1").await.unwrap().unwrap().status, GrantStatus::Revoked);
    assert!(!s.store.set_grant_status("ghost", GrantStatus::Revoked).await.unwrap());
    assert_eq!(s.store.grant("ghost").await.unwrap(), None, "status update must not create a grant");
    assert!(s.store.set_grant_ttl("g1", Duration::from_secs(1)).await.unwrap());
    assert!(!s.store.set_grant_ttl("ghost", TTL).await.unwrap());
    s.elapse(1).await;
    assert_eq!(s.store.grant("g1").await.unwrap(), None, "shortened TTL was not applied");
}

async fn refresh_rotation_is_a_compare_and_set(s: Subject) {
    s.store.put_refresh("r1", &refresh("g"), TTL).await.unwrap();
    assert_eq!(s.store.refresh("r1").await.unwrap(), Some(refresh("g")));
    assert_eq!(s.store.rotate("r1", 77, b"next-1", TTL).await.unwrap(), Rotation::Won);
    assert_eq!(
        s.store.rotate("r1", 78, b"next-2", TTL).await.unwrap(),
        Rotation::AlreadyRotated { at: 77, successor: Some(b"next-1".to_vec()) },
        "the second caller sees the first rotation and its successor"
    );
    let rotated = s.store.refresh("r1").await.unwrap().unwrap();
    assert_eq!((rotated.status, rotated.rotated_at), (RefreshStatus::Rotated, Some(77)));
    assert_eq!(s.store.successor("r1").await.unwrap(), Some(b"next-1".to_vec()));
    assert_eq!(s.store.rotate("missing", 1, b"x", TTL).await.unwrap(), Rotation::Unknown);
    assert_eq!(s.store.refresh("missing").await.unwrap(), None, "CAS must not create a token");
    s.store.delete_refresh("r1").await.unwrap();
    assert_eq!(s.store.refresh("r1").await.unwrap(), None);
}

async fn the_successor_is_kept_only_for_the_grace_window(s: Subject) {
    s.store.put_refresh("r", &refresh("g"), TTL).await.unwrap();
    assert_eq!(s.store.rotate("r", 5, b"next", Duration::from_secs(1)).await.unwrap(), Rotation::Won);
    s.elapse(1).await;
    assert_eq!(s.store.successor("r").await.unwrap(), None);
    assert_eq!(
        s.store.rotate("r", 6, b"again", TTL).await.unwrap(),
        Rotation::AlreadyRotated { at: 5, successor: None }
    );
}

async fn only_one_of_many_concurrent_rotations_wins(s: Subject) {
    s.store.put_refresh("r", &refresh("g"), TTL).await.unwrap();
    let rotations = (0..16).map(|i| {
        let store = s.store.clone();
        tokio::spawn(async move { store.rotate("r", i, format!("next-{i}").as_bytes(), TTL).await.unwrap() })
    });
    let mut winners = 0;
    let mut successors = std::collections::HashSet::new();
    for r in rotations {
        match r.await.unwrap() {
            Rotation::Won => winners += 1,
            Rotation::AlreadyRotated { successor, .. } => {
                successors.insert(successor.expect("the winner's successor"));
            }
            Rotation::Unknown => panic!("the token vanished"),
        }
    }
    assert_eq!(winners, 1);
    assert!(successors.len() <= 1, "every loser saw the same successor");
}

fn step<'a>(generation: u64, presented: &'a str, next: &'a str, at: i64, successor: &'a [u8]) -> FamilyStep<'a> {
    FamilyStep { generation, presented, next, at, successor, grace: TTL }
}

async fn a_family_starts_only_in_an_existing_grant_and_round_trips_with_it(s: Subject) {
    assert!(!s.store.start_family("nowhere", "d0").await.unwrap(), "a family must not create a grant");
    assert_eq!(s.store.grant("nowhere").await.unwrap(), None);
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    assert_eq!(s.store.grant("g").await.unwrap().unwrap().family, None);
    assert!(s.store.start_family("g", "d0").await.unwrap());
    let started = RefreshFamily { generation: 0, current: "d0".into(), previous: None, rotated_at: None };
    assert_eq!(s.store.grant("g").await.unwrap().unwrap().family, Some(started));
    assert_eq!(s.store.advance_family("g", step(0, "d0", "d1", 77, b"next-1")).await.unwrap(), Advance::Won);
    let advanced =
        RefreshFamily { generation: 1, current: "d1".into(), previous: Some("d0".into()), rotated_at: Some(77) };
    let stored = s.store.grant("g").await.unwrap().unwrap();
    assert_eq!(stored.family, Some(advanced.clone()));
    // A grant written whole (as a later schema migration or a restore does) keeps its family.
    s.store.put_grant(&stored, TTL).await.unwrap();
    assert_eq!(s.store.grant("g").await.unwrap().unwrap(), stored);
    // Status and upstream changes leave the family alone.
    s.store.set_grant_upstream("g", b"other").await.unwrap();
    assert_eq!(s.store.grant("g").await.unwrap().unwrap().family, Some(advanced));
    // Restarting (a first-form token rotating into a family) drops the previous generation.
    assert!(s.store.start_family("g", "e0").await.unwrap());
    let restarted = RefreshFamily { generation: 0, current: "e0".into(), previous: None, rotated_at: None };
    assert_eq!(s.store.grant("g").await.unwrap().unwrap().family, Some(restarted));
}

async fn a_family_advances_only_from_its_current_token(s: Subject) {
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    assert_eq!(s.store.advance_family("g", step(0, "d0", "d1", 5, b"x")).await.unwrap(), Advance::Unknown, "no family");
    s.store.start_family("g", "d0").await.unwrap();
    let wrong = [step(0, "forged", "d1", 5, b"x"), step(1, "d0", "d1", 5, b"x"), step(3, "d0", "d1", 5, b"x")];
    for attempt in wrong {
        assert_eq!(
            s.store.advance_family("g", attempt).await.unwrap(),
            Advance::Elsewhere { generation: 0 },
            "{attempt:?}"
        );
    }
    assert_eq!(s.store.advance_family("g", step(0, "d0", "d1", 5, b"after-0")).await.unwrap(), Advance::Won);
    assert_eq!(s.store.advance_family("g", step(1, "d1", "d2", 6, b"after-1")).await.unwrap(), Advance::Won);
    // The previous token gets the rotation that replaced it and its successor; older ones,
    // and a wrong digest for the previous generation, only where the family stands.
    assert_eq!(
        s.store.advance_family("g", step(1, "d1", "other", 7, b"again")).await.unwrap(),
        Advance::AlreadyRotated { at: 6, successor: Some(b"after-1".to_vec()) }
    );
    assert_eq!(s.store.family_successor("g").await.unwrap(), Some(b"after-1".to_vec()));
    assert_eq!(
        s.store.advance_family("g", step(0, "d0", "other", 7, b"again")).await.unwrap(),
        Advance::Elsewhere { generation: 2 }
    );
    assert_eq!(
        s.store.advance_family("g", step(1, "forged", "other", 7, b"again")).await.unwrap(),
        Advance::Elsewhere { generation: 2 }
    );
    let family = s.store.grant("g").await.unwrap().unwrap().family.unwrap();
    assert_eq!((family.generation, family.current.as_str()), (2, "d2"), "a refused step changed the family");
    assert_eq!(s.store.advance_family("none", step(0, "d0", "d1", 5, b"x")).await.unwrap(), Advance::Unknown);
    assert_eq!(s.store.grant("none").await.unwrap(), None, "CAS must not create a grant");
}

async fn a_family_successor_is_kept_only_for_the_grace_window(s: Subject) {
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    s.store.start_family("g", "d0").await.unwrap();
    let short = FamilyStep { grace: Duration::from_secs(1), ..step(0, "d0", "d1", 5, b"next") };
    assert_eq!(s.store.advance_family("g", short).await.unwrap(), Advance::Won);
    s.elapse(1).await;
    assert_eq!(s.store.family_successor("g").await.unwrap(), None);
    assert_eq!(
        s.store.advance_family("g", step(0, "d0", "x", 6, b"again")).await.unwrap(),
        Advance::AlreadyRotated { at: 5, successor: None }
    );
    assert!(s.store.grant("g").await.unwrap().is_some(), "the grant outlives the successor");
}

async fn only_one_of_many_concurrent_family_advances_wins(s: Subject) {
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    s.store.start_family("g", "d0").await.unwrap();
    let advances = (0..16).map(|i| {
        let store = s.store.clone();
        tokio::spawn(async move {
            let (next, successor) = (format!("d1-{i}"), format!("next-{i}"));
            store.advance_family("g", step(0, "d0", &next, i, successor.as_bytes())).await.unwrap()
        })
    });
    let mut winners = 0;
    let mut successors = std::collections::HashSet::new();
    for a in advances {
        match a.await.unwrap() {
            Advance::Won => winners += 1,
            Advance::AlreadyRotated { successor, .. } => {
                successors.insert(successor.expect("the winner's successor"));
            }
            other => panic!("a racing caller saw {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert!(successors.len() <= 1, "every loser saw the same successor");
    let family = s.store.grant("g").await.unwrap().unwrap().family.unwrap();
    assert_eq!(family.generation, 1);
    if let Some(successor) = successors.into_iter().next() {
        let winner = String::from_utf8(successor).unwrap().replace("next-", "d1-");
        assert_eq!(family.current, winner, "the family moved to the winner's token");
    }
}

async fn a_family_of_a_revoked_grant_does_not_advance(s: Subject) {
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    s.store.start_family("g", "d0").await.unwrap();
    s.store.set_grant_status("g", GrantStatus::Revoked).await.unwrap();
    assert_eq!(s.store.advance_family("g", step(0, "d0", "d1", 5, b"x")).await.unwrap(), Advance::Unknown);
    assert_eq!(s.store.family_successor("g").await.unwrap(), None);
}

async fn a_revoked_grant_keeps_its_first_tombstone_and_loses_its_upstream_tokens(s: Subject) {
    let first = Tombstone { at: 100, by: "admin:ops".into(), reason: "admin".into() };
    assert_eq!(s.store.revoke_grant("nowhere", &first, TTL).await.unwrap(), Revoked::Missing);
    assert_eq!(s.store.grant("nowhere").await.unwrap(), None, "revocation must not create a grant");
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    s.store.start_family("g", "d0").await.unwrap();
    assert_eq!(s.store.revoke_grant("g", &first, Duration::from_secs(2)).await.unwrap(), Revoked::Last);
    let revoked = s.store.grant("g").await.unwrap().unwrap();
    assert_eq!((revoked.status, revoked.tombstone.clone()), (GrantStatus::Revoked, Some(first.clone())));
    assert!(revoked.upstream.is_empty(), "the sealed upstream tokens are deleted");
    assert!(revoked.family.is_some(), "what the tokens were stays readable for reuse detection");
    // A second revocation, a refresh racing it and a status change leave the first alone.
    let second = Tombstone { at: 200, by: "user".into(), reason: "user".into() };
    assert_eq!(s.store.revoke_grant("g", &second, Duration::from_secs(2)).await.unwrap(), Revoked::Last);
    assert!(s.store.set_grant_upstream("g", b"refreshed").await.unwrap());
    assert!(s.store.set_grant_status("g", GrantStatus::Dead).await.unwrap());
    let still = s.store.grant("g").await.unwrap().unwrap();
    assert_eq!((still.status, still.tombstone), (GrantStatus::Revoked, Some(first)));
    assert!(still.upstream.is_empty(), "a refresh brought the upstream tokens back");
    s.elapse(2).await;
    assert_eq!(s.store.grant("g").await.unwrap(), None, "the tombstone outlived its time");
}

async fn grant_use_is_recorded_only_for_grants_that_exist(s: Subject) {
    s.store.note_use("nowhere", Some(5), "files", 1).await.unwrap();
    assert_eq!(s.store.grant("nowhere").await.unwrap(), None, "use must not create a grant");
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    s.store.note_use("g", Some(5), "files", 1).await.unwrap();
    s.store.note_use("g", None, "files", 9).await.unwrap();
    s.store.note_use("g", Some(7), "calendar", 1).await.unwrap();
    let usage = s.store.grant("g").await.unwrap().unwrap().usage;
    assert_eq!(usage, GrantUsage { last_used_at: Some(7), last_used_by: Some("calendar".into()), use_count: 11 });
}

async fn a_persons_recent_events_are_theirs_newest_first_and_few(s: Subject) {
    let kept = Retention { age: TTL, count: 10_000 };
    let events: Vec<String> = (0..30).map(|i| format!("{{\"n\":{i}}}")).collect();
    let ids = s.store.append_events(&events, kept).await.unwrap();
    assert_eq!(ids.len(), 30, "an id per event");
    let mine: Vec<String> = ids.iter().step_by(2).cloned().collect();
    let theirs: Vec<String> = ids.iter().skip(1).step_by(2).take(2).cloned().collect();
    s.store.note_user_events("dev:ann", &mine[..5], kept).await.unwrap();
    s.store.note_user_events("dev:ann", &mine[5..], kept).await.unwrap();
    s.store.note_user_events("dev:bob", &theirs, kept).await.unwrap();
    let read: Vec<String> = s.store.user_events("dev:ann").await.unwrap().into_iter().map(|e| e.json).collect();
    let expected: Vec<String> = events.iter().step_by(2).rev().cloned().collect();
    assert_eq!(read, expected, "ann's, newest first");
    let bob: Vec<String> = s.store.user_events("dev:bob").await.unwrap().into_iter().map(|e| e.json).collect();
    assert_eq!(bob, ["{\"n\":3}", "{\"n\":1}"]);
    assert!(s.store.user_events("dev:carol").await.unwrap().is_empty());
    // Only the newest few are remembered.
    let more: Vec<String> = (0..40).map(|i| format!("{{\"m\":{i}}}")).collect();
    let more_ids = s.store.append_events(&more, kept).await.unwrap();
    s.store.note_user_events("dev:ann", &more_ids, kept).await.unwrap();
    let read = s.store.user_events("dev:ann").await.unwrap();
    assert_eq!(read.len(), tether::store::USER_EVENTS);
    assert_eq!(read[0].json, "{\"m\":39}");
    // An id whose event left the trail (or never made it) is skipped.
    s.store.note_user_events("dev:dan", &["1-0".to_owned(), ids[0].clone()], kept).await.unwrap();
    let dan: Vec<String> = s.store.user_events("dev:dan").await.unwrap().into_iter().map(|e| e.json).collect();
    assert_eq!(dan, ["{\"n\":0}"]);
}

async fn audit_events_are_read_newest_first_in_pages(s: Subject) {
    let events: Vec<String> = (0..25).map(|i| format!("{{\"n\":{i}}}")).collect();
    let kept = Retention { age: TTL, count: 1_000 };
    s.store.append_events(&events[..10], kept).await.unwrap();
    s.store.append_events(&events[10..], kept).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.store.events(cursor.as_deref(), 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        cursor = page.last().map(|e| e.id.clone());
        seen.extend(page.into_iter().map(|e| e.json));
    }
    let expected: Vec<String> = events.iter().rev().cloned().collect();
    assert_eq!(seen, expected, "every event once, newest first");
    // Beyond the count the oldest leave (Redis trims whole nodes of its stream: about).
    let many: Vec<String> = (0..3_000).map(|i| format!("{{\"m\":{i}}}")).collect();
    s.store.append_events(&many, Retention { age: TTL, count: 1_000 }).await.unwrap();
    let mut total = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = s.store.events(cursor.as_deref(), 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        total += page.len();
        cursor = page.last().map(|e| e.id.clone());
    }
    assert!((1_000..1_300).contains(&total), "{total} events kept, about 1000 asked");
}

async fn listings_page_newest_first_through_ties_and_drop_what_is_removed(s: Subject) {
    let keys = [IndexKey::All, IndexKey::Client("c 1/{x}".into())];
    // Five grants a second: pages of three end inside seconds.
    for i in 0..20 {
        s.store.index_grant(&format!("g{i:02}"), 1_000 + i / 5, &keys, TTL).await.unwrap();
    }
    s.store.index_grant("other", 5_000, &[IndexKey::All], TTL).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<IndexPosition> = None;
    loop {
        let page = s.store.indexed(&keys[1], after.as_ref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page.into_iter().map(|(_, id)| id));
    }
    let expected: Vec<String> = (0..20).rev().map(|i| format!("g{i:02}")).collect();
    assert_eq!(seen, expected, "newest first, ties by id descending, each once");
    assert_eq!(s.store.index_len(&keys[1]).await.unwrap(), 20);
    assert_eq!(s.store.index_len(&IndexKey::All).await.unwrap(), 21);
    assert_eq!(s.store.indexed(&IndexKey::All, None, 1).await.unwrap(), [(5_000, "other".to_owned())]);
    s.store.unindex(&keys[1], &["g19".into(), "g00".into(), "nope".into()]).await.unwrap();
    let left = s.store.indexed(&keys[1], None, 100).await.unwrap();
    assert_eq!((left.len(), left[0].1.as_str(), left[17].1.as_str()), (18, "g18", "g01"));
    assert_eq!(s.store.index_len(&IndexKey::Resource("none".into())).await.unwrap(), 0);
    s.store.keep_indexes(&keys, TTL).await.unwrap();
}

async fn store_answers_ping(s: Subject) {
    s.store.ping().await.unwrap();
}

async fn locks_are_exclusive_owned_and_expire(s: Subject) {
    let ttl = Duration::from_secs(1);
    assert!(s.store.try_lock("g", "a", ttl).await.unwrap());
    assert!(!s.store.try_lock("g", "b", ttl).await.unwrap(), "held by a");
    s.store.unlock("g", "b").await.unwrap(); // not b's to release
    assert!(!s.store.try_lock("g", "b", ttl).await.unwrap());
    s.store.unlock("g", "a").await.unwrap();
    assert!(s.store.try_lock("g", "b", ttl).await.unwrap(), "released by its owner");
    s.elapse(1).await;
    assert!(s.store.try_lock("g", "c", ttl).await.unwrap(), "a dead holder's lock expires");
    assert!(s.store.try_lock("other", "a", ttl).await.unwrap(), "locks are per name");
}

async fn grant_upstream_tokens_are_replaced_in_place(s: Subject) {
    s.store.put_grant(&grant("g1"), TTL).await.unwrap();
    s.store.set_grant_status("g1", GrantStatus::Dead).await.unwrap();
    assert!(s.store.set_grant_upstream("g1", &[7, 7, 7]).await.unwrap());
    let updated = s.store.grant("g1").await.unwrap().unwrap();
    assert_eq!(updated.upstream, vec![7, 7, 7]);
    assert_eq!(updated.status, GrantStatus::Dead, "writing tokens leaves the status alone");
    assert!(!s.store.set_grant_upstream("ghost", &[1]).await.unwrap());
    assert_eq!(s.store.grant("ghost").await.unwrap(), None, "must not create a grant");
}

/// Every part of the activity record, for grants spread over them.
async fn used_since(s: &Subject, since: u64, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for shard in 0..s.store.shards() {
        ids.extend(s.store.used_since(shard, i64::try_from(since).unwrap(), limit).await.unwrap());
    }
    ids.sort();
    ids
}

async fn recently_used_grants_are_listed_and_forgotten(s: Subject) {
    let (old, new) = ("g-old", "g-new");
    s.store.mark_used(old, 100, TTL).await.unwrap();
    s.store.mark_used(new, 200, TTL).await.unwrap();
    s.store.mark_used(old, 150, TTL).await.unwrap(); // a later use moves it
    assert_eq!(used_since(&s, 150, 10).await, [new, old]);
    assert_eq!(used_since(&s, 151, 10).await, [new]);
    for shard in 0..s.store.shards() {
        s.store.forget_before(shard, 200).await.unwrap();
    }
    assert_eq!(used_since(&s, 0, 10).await, [new]);
    // Many grants spread over the parts (one hot key would be one hot slot on Cluster), each
    // in one part only.
    let ids: Vec<String> = (0..64).map(|i| format!("grant-{i}")).collect();
    for id in &ids {
        s.store.mark_used(id, 300, TTL).await.unwrap();
    }
    let mut busiest = 0;
    for shard in 0..s.store.shards() {
        let part = s.store.used_since(shard, 300, 100).await.unwrap();
        assert!(part.iter().all(|id| tether::store::activity_shard(id, s.store.shards()) == shard), "{part:?}");
        busiest = busiest.max(part.len());
    }
    assert_eq!(used_since(&s, 300, 100).await, {
        let mut all = ids.clone();
        all.sort();
        all
    });
    if s.store.shards() > 1 {
        assert!(busiest < 16, "the parts are uneven: {busiest} of 64 in one");
    }
}

async fn browsers_remember_their_latest_grant_per_client_and_resource(s: Subject) {
    assert_eq!(s.store.remembered_grant("b1", "c", "files").await.unwrap(), None);
    s.store.remember_grant("b1", "c", "files", "g1", TTL).await.unwrap();
    s.store.remember_grant("b1", "c", "calendar", "g2", TTL).await.unwrap();
    s.store.remember_grant("b1", "c", "files", "g3", Duration::from_secs(1)).await.unwrap();
    assert_eq!(s.store.remembered_grant("b1", "c", "files").await.unwrap().as_deref(), Some("g3"));
    assert_eq!(s.store.remembered_grant("b1", "c", "calendar").await.unwrap().as_deref(), Some("g2"));
    assert_eq!(s.store.remembered_grant("b2", "c", "files").await.unwrap(), None);
    assert_eq!(s.store.remembered_grant("b1", "other", "files").await.unwrap(), None);
    s.elapse(1).await;
    assert_eq!(s.store.remembered_grant("b1", "c", "files").await.unwrap(), None, "the browser record expires");
}

async fn live_dynamic_clients_are_capped_until_they_lapse_or_go(s: Subject) {
    let caps = ClientCaps { max_clients: 2, per_hour: 0 };
    let now = s.now();
    assert_eq!(s.store.admit_client("a", now + 1, caps, now).await.unwrap(), Admission::Admitted);
    assert_eq!(s.store.admit_client("b", now + 1, caps, now).await.unwrap(), Admission::Admitted);
    assert_eq!(s.store.admit_client("c", now + 1, caps, now).await.unwrap(), Admission::TooManyClients);
    // `b` is used: touching it moves its lapse time; `a` is not and lapses.
    s.store.put_client(&client("b"), Duration::from_secs(1)).await.unwrap();
    assert!(s.store.touch_client("b", TTL).await.unwrap());
    s.elapse(2).await;
    let later = s.now();
    assert_eq!(s.store.admit_client("c", later + 60, caps, later).await.unwrap(), Admission::Admitted, "a lapsed");
    assert_eq!(
        s.store.admit_client("d", later + 60, caps, later).await.unwrap(),
        Admission::TooManyClients,
        "b was touched: still counted"
    );
    assert!(s.store.delete_client("b").await.unwrap());
    assert_eq!(s.store.admit_client("d", later + 60, caps, later).await.unwrap(), Admission::Admitted, "b deleted");
}

async fn registrations_are_capped_per_hour(s: Subject) {
    let caps = ClientCaps { max_clients: 0, per_hour: 2 };
    let hour = s.now() - s.now().rem_euclid(3600);
    assert_eq!(s.store.admit_client("x", hour + 9000, caps, hour + 10).await.unwrap(), Admission::Admitted);
    assert_eq!(s.store.admit_client("y", hour + 9000, caps, hour + 20).await.unwrap(), Admission::Admitted);
    assert_eq!(s.store.admit_client("z", hour + 9000, caps, hour + 30).await.unwrap(), Admission::TooManyRegistrations);
    assert_eq!(
        s.store.admit_client("z", hour + 9000, caps, hour + 3600).await.unwrap(),
        Admission::Admitted,
        "next hour"
    );
    let unlimited = ClientCaps::default();
    for i in 0..20 {
        let id = format!("u{i}");
        assert_eq!(s.store.admit_client(&id, hour + 9000, unlimited, hour + 3601).await.unwrap(), Admission::Admitted);
    }
}

async fn a_reseal_replaces_upstream_tokens_only_if_unchanged(s: Subject) {
    s.store.put_grant(&grant("g"), TTL).await.unwrap();
    let original = grant("g").upstream;
    assert!(s.store.reseal_grant_upstream("g", &original, b"resealed").await.unwrap());
    assert_eq!(s.store.grant("g").await.unwrap().unwrap().upstream, b"resealed");
    // A refresh stored new tokens meanwhile: the stale re-seal must not overwrite them.
    s.store.set_grant_upstream("g", b"refreshed").await.unwrap();
    assert!(!s.store.reseal_grant_upstream("g", b"resealed", b"stale").await.unwrap());
    assert_eq!(s.store.grant("g").await.unwrap().unwrap().upstream, b"refreshed");
    assert!(!s.store.reseal_grant_upstream("missing", b"", b"x").await.unwrap());
    assert!(s.store.grant("missing").await.unwrap().is_none(), "a re-seal never creates a grant");
}

async fn a_scan_lists_every_grant_once_it_has_walked_all_pages(s: Subject) {
    let ids: Vec<String> = (0..1200).map(|i| format!("grant-{i}")).collect();
    for id in &ids {
        s.store.put_grant(&grant(id), TTL).await.unwrap();
    }
    // Other records are not grants.
    s.store.put_client(&client("grant-like"), TTL).await.unwrap();
    let (mut cursor, mut seen) = (0, std::collections::BTreeSet::new());
    loop {
        let (next, page) = s.store.scan_grants(cursor).await.unwrap();
        seen.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen, ids.into_iter().collect());
}

async fn connections_are_claimed_and_settled_once_and_sessions_point_at_grants(s: Subject) {
    let record = ConnectionRecord {
        resource: "files".into(),
        session: "chat-1".into(),
        scope: vec!["files:read".into()],
        verifier: "v".into(),
        created_at: 1,
        expires_at: 601,
    };
    s.store.put_connection("c1", "link-digest", &record, TTL).await.unwrap();
    assert_eq!(s.store.connection("c1").await.unwrap(), Some(record));
    assert_eq!(s.store.connection_for_link("link-digest").await.unwrap().as_deref(), Some("c1"));
    assert_eq!(s.store.connection_for_link("other").await.unwrap(), None);

    assert_eq!(s.store.claim_connection("c1", "browser-a", TTL).await.unwrap(), "browser-a");
    assert_eq!(s.store.claim_connection("c1", "browser-b", TTL).await.unwrap(), "browser-a", "first claim holds");

    assert_eq!(s.store.connection_outcome("c1").await.unwrap(), None);
    let denied = ConnectionOutcome { status: ConnectionStatus::Denied, at: 5, reason: Some("no".into()) };
    let connected = ConnectionOutcome { status: ConnectionStatus::Connected, at: 6, reason: None };
    assert_eq!(s.store.settle_connection("c1", &denied, TTL).await.unwrap(), denied);
    assert_eq!(s.store.settle_connection("c1", &connected, TTL).await.unwrap(), denied, "settled once");
    assert_eq!(s.store.connection_outcome("c1").await.unwrap(), Some(denied));

    assert_eq!(s.store.put_session("sess", "g1", TTL).await.unwrap(), None);
    assert_eq!(s.store.put_session("sess", "g2", TTL).await.unwrap().as_deref(), Some("g1"), "the one it replaced");
    assert_eq!(s.store.session("sess").await.unwrap().as_deref(), Some("g2"));
    assert_eq!(s.store.take_session("sess").await.unwrap().as_deref(), Some("g2"));
    assert_eq!(s.store.take_session("sess").await.unwrap(), None);
    s.store.publish_connection("files", "{}").await.unwrap();

    let short = Duration::from_secs(1);
    s.store.put_session("brief", "g3", short).await.unwrap();
    assert_eq!(s.store.claim_connection("c2", "browser-a", short).await.unwrap(), "browser-a");
    s.elapse(1).await;
    assert_eq!(s.store.session("brief").await.unwrap(), None, "sessions expire");
    assert_eq!(s.store.claim_connection("c2", "browser-b", short).await.unwrap(), "browser-b", "claims expire");
}

/// Redis connections open from Tether (the cli's own connection left out).
fn tether_connections(redis: &RedisServer) -> usize {
    redis.cli(&["CLIENT", "LIST"]).lines().filter(|l| !l.contains("cmd=client")).count()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Each single-threaded runtime (an HTTP worker) talks to a standalone Redis over a connection
/// of its own; a runtime that ended leaves nothing behind that a later one on the same thread
/// would trip over, and multi-threaded runtimes share one connection.
#[test]
fn a_worker_has_its_own_connection_and_a_new_runtime_on_its_thread_gets_a_working_one() {
    let redis = RedisServer::start();
    // Tether's own (multi-threaded) runtime builds the store, as `tether serve` does.
    let home = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = Arc::new(home.block_on(async {
        RedisStore::connect(&RedisTarget::standalone(&redis.url()), "workers", Duration::from_secs(2)).unwrap()
    }));
    let grant = GrantRecord::new(
        "g1".into(),
        GrantInfo {
            subject: "user".into(),
            client_id: "client".into(),
            resource: "files".into(),
            provider: "dev".into(),
            scope: vec!["files:read".into()],
            offline: true,
            created_at: 1,
            ..GrantInfo::default()
        },
        b"sealed".to_vec(),
    );
    let first = current_thread();
    first.block_on(store.put_grant(&grant, Duration::from_secs(60))).unwrap();
    assert_eq!(tether_connections(&redis), 1);
    drop(first);
    // The first runtime's connection ended with it; the next runtime on this thread connects anew.
    for _ in 0..3 {
        let next = current_thread();
        assert_eq!(next.block_on(store.grant("g1")).unwrap().as_ref(), Some(&grant));
    }
    let other = Arc::clone(&store);
    std::thread::spawn(move || current_thread().block_on(other.grant("g1")).unwrap()).join().unwrap().unwrap();
    for _ in 0..5 {
        assert!(home.block_on(store.grant("g1")).unwrap().is_some());
    }
    let worker = current_thread();
    assert!(worker.block_on(store.grant("g1")).unwrap().is_some());
    assert!(worker.block_on(store.grant("g1")).unwrap().is_some());
    assert_eq!(tether_connections(&redis), 2, "the live worker's own and the shared one");
    // A worker's connection closes with its runtime; the shared one stays.
    drop(worker);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while tether_connections(&redis) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tether_connections(&redis), 1);
    assert!(home.block_on(store.grant("g1")).unwrap().is_some());
}

const LINK: &str = "0123456789abcdef01234567";

fn link(tokens: &[u8]) -> LinkRecord {
    common::sample_link(LINK, tokens)
}

/// A grant on the connection `LINK`, holding no tokens of its own.
fn linked_grant(n: u32) -> GrantRecord {
    let mut g = grant(&format!("{LINK}-{n:032x}"));
    g.upstream = Vec::new();
    g
}

async fn grants_on_a_connection_read_its_tokens_and_status_in_one_call(s: Subject) {
    s.store.put_link(&link(&[0, 1, 255]), TTL).await.unwrap();
    let (a, b) = (linked_grant(1), linked_grant(2));
    assert_eq!(connection_of(&a.id), Some(LINK));
    s.store.put_grant(&a, TTL).await.unwrap();
    s.store.put_grant(&b, TTL).await.unwrap();
    let read = s.store.grant(&a.id).await.unwrap().unwrap();
    assert_eq!((read.status, read.upstream.as_slice()), (GrantStatus::Active, &[0, 1, 255][..]));
    assert_eq!(s.store.link_grants(LINK).await.unwrap(), vec![a.id.clone(), b.id.clone()]);
    // A refresh through one grant is the other's too.
    assert!(s.store.set_grant_upstream(&a.id, b"fresh").await.unwrap());
    assert_eq!(s.store.grant(&b.id).await.unwrap().unwrap().upstream, b"fresh");
    assert_eq!(s.store.link(LINK).await.unwrap().unwrap().upstream, b"fresh");
    // So is a re-seal.
    assert!(!s.store.reseal_grant_upstream(&b.id, b"stale", b"resealed").await.unwrap());
    assert!(s.store.reseal_grant_upstream(&b.id, b"fresh", b"resealed").await.unwrap());
    assert_eq!(s.store.grant(&a.id).await.unwrap().unwrap().upstream, b"resealed");
    // Token sets of kilobytes (providers whose tokens are JWTs) read back whole, and shorter
    // ones replace them without a trace of the longer.
    let large: Vec<u8> = (0..3000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
    assert!(s.store.reseal_grant_upstream(&a.id, b"resealed", &large).await.unwrap());
    assert_eq!(s.store.grant(&b.id).await.unwrap().unwrap().upstream, large);
    assert!(s.store.reseal_grant_upstream(&b.id, &large, b"resealed").await.unwrap());
    assert_eq!(s.store.link(LINK).await.unwrap().unwrap().upstream, b"resealed");
    // The provider refusing one grant's refresh leaves every grant on it needing the user.
    assert!(s.store.set_grant_status(&b.id, GrantStatus::Dead).await.unwrap());
    assert_eq!(s.store.link(LINK).await.unwrap().unwrap().status, LinkStatus::NeedsReauth);
    for id in [&a.id, &b.id] {
        let g = s.store.grant(id).await.unwrap().unwrap();
        assert_eq!(g.status, GrantStatus::Dead, "{id}");
        assert!(g.upstream.is_empty(), "no tokens for a grant that needs the user");
    }
    // A new sign-in makes it active again, for all.
    s.store.put_link(&link(b"signed-in-again"), TTL).await.unwrap();
    assert_eq!(s.store.grant(&a.id).await.unwrap().unwrap().status, GrantStatus::Active);
    // Tokens that expire with nothing to refresh them: every grant on it is expired.
    assert!(s.store.set_grant_status(&a.id, GrantStatus::Expired).await.unwrap());
    assert_eq!(s.store.link(LINK).await.unwrap().unwrap().status, LinkStatus::Expired);
    assert_eq!(s.store.grant(&b.id).await.unwrap().unwrap().status, GrantStatus::Expired);
    s.store.put_link(&link(b"signed-in-again"), TTL).await.unwrap();
    assert_eq!(s.store.grant(&b.id).await.unwrap().unwrap().status, GrantStatus::Active);
    // A grant that holds its own tokens keeps its own status.
    s.store.put_grant(&grant("own"), TTL).await.unwrap();
    assert!(s.store.set_grant_status("own", GrantStatus::Expired).await.unwrap());
    assert_eq!(s.store.grant("own").await.unwrap().unwrap().status, GrantStatus::Expired);
    // A grant whose connection is gone has no tokens and is not active.
    let orphan = GrantRecord { id: format!("{}-{:032x}", "f".repeat(24), 1), ..linked_grant(3) };
    s.store.put_grant(&orphan, TTL).await.unwrap();
    assert_eq!(s.store.grant(&orphan.id).await.unwrap().unwrap().status, GrantStatus::Dead);
    assert_eq!(s.store.link("nowhere").await.unwrap(), None);
    assert!(s.store.link_grants("nowhere").await.unwrap().is_empty());
}

/// A connection made for a person before they connect an account (an enterprise assertion)
/// never replaces one that exists: a sign-in at the same moment keeps its tokens.
async fn a_connection_is_created_only_where_there_is_none_or_an_ended_one(s: Subject) {
    let waiting = LinkRecord {
        info: LinkInfo { subject: String::new(), account: None, bound_to_user: true, ..link(b"").info },
        status: LinkStatus::NeedsReauth,
        ..link(b"")
    };
    assert!(s.store.create_link(&waiting, TTL).await.unwrap());
    assert_eq!(s.store.link(LINK).await.unwrap(), Some(waiting.clone()), "read back whole");
    let a = linked_grant(1);
    s.store.put_grant(&a, TTL).await.unwrap();
    let read = s.store.grant(&a.id).await.unwrap().unwrap();
    assert_eq!((read.status, read.upstream.is_empty()), (GrantStatus::Dead, true), "waits for its person");
    assert!(!s.store.create_link(&waiting, TTL).await.unwrap(), "made twice");
    // The person connects: the grant made while waiting works with the account's tokens, and a
    // late creation changes nothing.
    s.store.put_link(&link(b"tokens"), TTL).await.unwrap();
    assert!(!s.store.create_link(&waiting, TTL).await.unwrap(), "replaced a live connection");
    let read = s.store.grant(&a.id).await.unwrap().unwrap();
    assert_eq!((read.status, read.upstream.as_slice()), (GrantStatus::Active, &b"tokens"[..]));
    // Once ended it may be made again.
    let tomb = Tombstone { at: 5, by: "user".into(), reason: "user".into() };
    assert_eq!(s.store.revoke_grant(&a.id, &tomb, TTL).await.unwrap(), Revoked::Last);
    assert!(s.store.create_link(&waiting, TTL).await.unwrap(), "an ended connection blocks a new one");
    assert_eq!(s.store.link(LINK).await.unwrap().unwrap().status, LinkStatus::NeedsReauth);
}

async fn a_connection_outlives_its_grants_and_its_tokens_go_with_its_last_live_grant(s: Subject) {
    s.store.put_link(&link(b"tokens"), Duration::from_secs(1)).await.unwrap();
    let (a, b) = (linked_grant(1), linked_grant(2));
    s.store.put_grant(&a, TTL).await.unwrap();
    s.store.put_grant(&b, TTL).await.unwrap();
    s.elapse(2).await;
    assert!(s.store.link(LINK).await.unwrap().is_some(), "kept as long as its grants");
    let tomb = Tombstone { at: 5, by: "user".into(), reason: "user".into() };
    assert_eq!(s.store.revoke_grant(&a.id, &tomb, TTL).await.unwrap(), Revoked::Shared);
    let revoked = s.store.grant(&a.id).await.unwrap().unwrap();
    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert!(revoked.upstream.is_empty(), "a revoked grant shows no tokens");
    assert_eq!(s.store.grant(&b.id).await.unwrap().unwrap().upstream, b"tokens", "the sibling keeps working");
    // A refresh racing the revocation of the last grant must not bring the tokens back.
    assert_eq!(s.store.revoke_grant(&b.id, &tomb, TTL).await.unwrap(), Revoked::Last);
    let ended = s.store.link(LINK).await.unwrap().unwrap();
    assert_eq!(ended.status, LinkStatus::Ended);
    assert!(ended.upstream.is_empty(), "the upstream tokens are deleted with the last grant");
    assert!(s.store.set_grant_upstream(&b.id, b"refreshed").await.unwrap());
    assert!(s.store.link(LINK).await.unwrap().unwrap().upstream.is_empty());
    // Revoking again stays Last (idempotent), never resurrects anything.
    assert_eq!(s.store.revoke_grant(&b.id, &tomb, TTL).await.unwrap(), Revoked::Last);
    // A grant whose entry dangles (expired) does not keep the tokens alive.
    s.store.put_link(&link(b"again"), TTL).await.unwrap();
    let (c, d) = (linked_grant(4), linked_grant(5));
    s.store.put_grant(&c, Duration::from_secs(1)).await.unwrap();
    s.store.put_grant(&d, TTL).await.unwrap();
    s.elapse(2).await;
    assert_eq!(s.store.revoke_grant(&d.id, &tomb, TTL).await.unwrap(), Revoked::Last);
}

async fn of_two_grants_revoked_at_once_exactly_one_is_the_last(s: Subject) {
    for round in 0..5u32 {
        s.store.put_link(&link(b"tokens"), TTL).await.unwrap();
        let grants: Vec<GrantRecord> = (0..4).map(|i| linked_grant(round * 10 + i)).collect();
        for g in &grants {
            s.store.put_grant(g, TTL).await.unwrap();
        }
        let tomb = Tombstone { at: 5, by: "admin:ops".into(), reason: "admin".into() };
        let revocations = grants.iter().map(|g| {
            let (store, id, tomb) = (s.store.clone(), g.id.clone(), tomb.clone());
            tokio::spawn(async move { store.revoke_grant(&id, &tomb, TTL).await.unwrap() })
        });
        let mut last = 0;
        for r in revocations {
            if r.await.unwrap() == Revoked::Last {
                last += 1;
            }
        }
        assert_eq!(last, 1, "round {round}");
        assert!(s.store.link(LINK).await.unwrap().unwrap().upstream.is_empty());
    }
}

async fn sign_in_sessions_round_trip_and_end(s: Subject) {
    let session = SessionRecord {
        user: "dev:42".into(),
        binding_digest: "b".into(),
        display_name: Some("Octo Cat".into()),
        email: None,
        created_at: 1,
    };
    s.store.put_browser_session("k", &session, Duration::from_secs(1)).await.unwrap();
    assert_eq!(s.store.browser_session("k").await.unwrap(), Some(session.clone()));
    assert_eq!(s.store.browser_session("other").await.unwrap(), None);
    s.store.end_browser_session("k").await.unwrap();
    assert_eq!(s.store.browser_session("k").await.unwrap(), None);
    s.store.put_browser_session("k", &session, Duration::from_secs(1)).await.unwrap();
    s.elapse(2).await;
    assert_eq!(s.store.browser_session("k").await.unwrap(), None, "a session is short-lived");
}

/// The activity record as versions before its 16 parts kept it (one `recent` key): its uses
/// are still listed with the first part and pruned with it, so a rolling upgrade misses no
/// grant in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_recorded_by_the_previous_version_are_read_and_pruned() {
    let redis = RedisServer::start();
    let store =
        RedisStore::connect(&RedisTarget::standalone(&redis.url()), "contract", Duration::from_secs(2)).unwrap();
    assert_eq!(redis.cli(&["ZADD", "contract:v1:recent", "100", "old-grant"]).trim(), "1");
    store.mark_used("new-grant", 150, Duration::from_secs(60)).await.unwrap();
    let mut listed = Vec::new();
    for shard in 0..store.shards() {
        listed.extend(store.used_since(shard, 50, 10).await.unwrap());
    }
    listed.sort();
    assert_eq!(listed, ["new-grant", "old-grant"]);
    for shard in 0..store.shards() {
        store.forget_before(shard, 120).await.unwrap();
    }
    assert_eq!(redis.cli(&["ZCARD", "contract:v1:recent"]).trim(), "0", "pruned like the parts");
}
