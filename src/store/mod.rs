//! Storage: one small async trait per record kind, an in-memory and a Redis implementation.
//!
//! The store holds records and bytes. It never sees a raw code, token or secret (callers key
//! records by their SHA-256 digest) and never sees an upstream token in the clear (callers
//! seal them before handing them over). Every record is written with a TTL.

use std::time::Duration;

use async_trait::async_trait;

use crate::clock::UnixTime;

pub mod memory;
pub mod records;
pub mod redis;
mod redis_conn;

pub use self::redis::{MigrationReport, RedisStore, WriteSchema};
pub use memory::MemoryStore;
pub use records::*;
pub use redis_conn::{RedisTarget, Topology};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time. Transient.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded. Not transient: a bug or foreign data.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Limits on dynamic registration that hold across replicas (0 = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCaps {
    pub max_clients: u64,
    pub per_hour: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// As many live dynamic clients as `max_clients`.
    TooManyClients,
    /// As many registrations this hour as `per_hour`.
    TooManyRegistrations,
}

/// Dynamically registered clients (RFC 7591).
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Counts a new dynamic client against the caps before it is stored; `expires_at` is
    /// when it lapses unless used.
    async fn admit_client(
        &self,
        client_id: &str,
        expires_at: UnixTime,
        caps: ClientCaps,
        now: UnixTime,
    ) -> StoreResult<Admission>;
    async fn put_client(&self, client: &ClientRecord, ttl: Duration) -> StoreResult<()>;
    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Resets the time to live of an existing client; `false` when there is no such client.
    async fn touch_client(&self, client_id: &str, ttl: Duration) -> StoreResult<bool>;
    /// Removes a client; `false` when there was none.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;
}

/// Authorization requests between `/authorize` and the upstream callback.
///
/// Two stages, each taken exactly once: a request awaiting the user's consent (keyed by the
/// digest of the consent id on the page), then a request awaiting the upstream callback
/// (keyed by the digest of the upstream `state`).
#[async_trait]
pub trait PendingStore: Send + Sync {
    async fn put_consent(&self, key: &str, req: &ConsentRecord, ttl: Duration) -> StoreResult<()>;
    async fn take_consent(&self, key: &str) -> StoreResult<Option<ConsentRecord>>;
    async fn put_pending(&self, key: &str, req: &PendingRecord, ttl: Duration) -> StoreResult<()>;
    async fn take_pending(&self, key: &str) -> StoreResult<Option<PendingRecord>>;
}

/// What taking an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// First use: the code's record, now deleted.
    Fresh(CodeRecord),
    /// The code was already taken; this is the grant it was issued for.
    Reused { grant_id: String },
    /// Never issued, or expired.
    Unknown,
}

/// Authorization codes, keyed by digest, taken atomically.
#[async_trait]
pub trait CodeStore: Send + Sync {
    async fn put_code(&self, key: &str, code: &CodeRecord, ttl: Duration) -> StoreResult<()>;
    /// Atomically takes the code and leaves a marker (kept for `used_ttl`) naming its grant,
    /// so that a second presentation can be recognised as a replay.
    async fn take_code(&self, key: &str, used_ttl: Duration) -> StoreResult<CodeTake>;
}

/// Grants: who authorized which client for which resource, with the sealed upstream tokens.
#[async_trait]
pub trait GrantStore: Send + Sync {
    async fn put_grant(&self, grant: &GrantRecord, ttl: Duration) -> StoreResult<()>;
    /// The grant; for a grant on a connection, with the connection's sealed tokens as its
    /// `upstream` and `Dead` while the connection needs re-authorization (one round trip:
    /// the two share a hash slot).
    async fn grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>>;
    /// Sets the status of an existing grant; `false` when there is no such grant. For a grant
    /// on a connection, `Dead` marks the connection `needs_reauth` (every grant on it).
    async fn set_grant_status(&self, grant_id: &str, status: GrantStatus) -> StoreResult<bool>;
    /// Resets the time to live of an existing grant; `false` when there is no such grant.
    async fn set_grant_ttl(&self, grant_id: &str, ttl: Duration) -> StoreResult<bool>;
    /// Replaces the sealed upstream tokens of an existing grant, leaving its status alone (a
    /// revocation racing a refresh stays a revocation); `false` when there is no such grant.
    async fn set_grant_upstream(&self, grant_id: &str, upstream: &[u8]) -> StoreResult<bool>;
    /// Replaces the sealed upstream tokens only if they are still `expected` (a re-seal under
    /// a new key must not overwrite tokens a concurrent refresh just stored); `false` otherwise.
    async fn reseal_grant_upstream(&self, grant_id: &str, expected: &[u8], upstream: &[u8]) -> StoreResult<bool>;
    /// Revokes an existing grant: status `revoked`, the tombstone, the sealed upstream tokens
    /// deleted (a grant on a connection: the connection's, when no other live grant uses
    /// them), and the whole record kept only `ttl` more. A grant already revoked keeps its
    /// first tombstone. Atomic: of two grants of one connection revoked at once, exactly one
    /// is `Last`.
    async fn revoke_grant(&self, grant_id: &str, tombstone: &Tombstone, ttl: Duration) -> StoreResult<Revoked>;
    /// Records `count` uses by resource `by`; with `at`, also when it was last used. Does
    /// nothing to a grant that is gone.
    async fn note_use(&self, grant_id: &str, at: Option<UnixTime>, by: &str, count: u64) -> StoreResult<()>;
    /// One page of grant ids: pass 0 first, then the returned cursor until it is 0 again.
    /// A grant present for the whole scan is listed at least once.
    async fn scan_grants(&self, cursor: u64) -> StoreResult<(u64, Vec<String>)>;
}

/// Connections: a user's upstream tokens for one provider, shared by the user's grants on it.
/// A grant on a connection is stored with the connection's id in its own (see
/// `connection_of`); `put_grant` adds it to the connection's grants.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Creates or replaces the connection (new tokens from an upstream sign-in; status
    /// `active`), keeping it at least `ttl`.
    async fn put_link(&self, link: &LinkRecord, ttl: Duration) -> StoreResult<()>;
    /// Stores the connection only where there is none or only an ended one (atomically: a
    /// connection made meanwhile stands); whether it did.
    async fn create_link(&self, link: &LinkRecord, ttl: Duration) -> StoreResult<bool>;
    async fn link(&self, link_id: &str) -> StoreResult<Option<LinkRecord>>;
    /// The ids of the grants made on the connection (ended ones included until they expire).
    async fn link_grants(&self, link_id: &str) -> StoreResult<Vec<String>>;
}

/// Sign-in sessions: who is signed in to Tether in a browser (keyed by the cookie's digest).
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put_browser_session(&self, key: &str, session: &SessionRecord, ttl: Duration) -> StoreResult<()>;
    async fn browser_session(&self, key: &str) -> StoreResult<Option<SessionRecord>>;
    async fn end_browser_session(&self, key: &str) -> StoreResult<()>;
}

/// Short leases that let one replica act for all (the upstream refresh of a grant), and
/// single-use marks (a link, an assertion's `jti`).
#[async_trait]
pub trait LockStore: Send + Sync {
    /// Takes `name` for `ttl` unless someone holds it. The TTL frees a lock whose holder died.
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool>;
    /// Releases `name` if `owner` still holds it (a lock that expired and was taken by
    /// someone else is left alone).
    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()>;
    /// `true` the first time `name` is spent within `ttl`, on every replica at once: a lock
    /// never released.
    async fn spend_once(&self, name: &str, ttl: Duration) -> StoreResult<bool> {
        self.try_lock(name, "spent", ttl).await
    }
}

/// What a browser authorized before: per (client, resource), the latest grant, so that a new
/// authorization in the same browser can widen it instead of replacing it with a narrower one.
#[async_trait]
pub trait BrowserStore: Send + Sync {
    /// `browser` is the digest of the browser-binding cookie.
    async fn remember_grant(
        &self,
        browser: &str,
        client_id: &str,
        resource: &str,
        grant_id: &str,
        ttl: Duration,
    ) -> StoreResult<()>;
    async fn remembered_grant(&self, browser: &str, client_id: &str, resource: &str) -> StoreResult<Option<String>>;
}

/// The member under which a browser's grant for (client, resource) is remembered, in every
/// store.
fn browser_field(client_id: &str, resource: &str) -> String {
    format!("{resource}|{client_id}")
}

/// Which grants were used recently, for refreshing their upstream tokens ahead of expiry.
/// The record is spread over `shards()` parts (on Redis, keys in different hash slots): each
/// grant is in one, and a background round takes the parts one by one.
#[async_trait]
pub trait ActivityStore: Send + Sync {
    /// How many parts the record is spread over.
    fn shards(&self) -> usize {
        1
    }
    /// Records a use; the record (and its part, when no longer used) lasts `ttl`.
    async fn mark_used(&self, grant_id: &str, at: UnixTime, ttl: Duration) -> StoreResult<()>;
    /// Up to `limit` grants of part `shard` used at or after `since`.
    async fn used_since(&self, shard: usize, since: UnixTime, limit: usize) -> StoreResult<Vec<String>>;
    /// Drops the uses of part `shard` before `before`.
    async fn forget_before(&self, shard: usize, before: UnixTime) -> StoreResult<()>;
}

/// The part of an `ActivityStore` of `shards` parts that holds `grant_id`: the same on every
/// replica and every version (FNV-1a, not the standard library's hasher).
pub fn activity_shard(grant_id: &str, shards: usize) -> usize {
    let hash =
        grant_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    usize::try_from(hash % u64::try_from(shards.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// The connect flow: MCP servers' requests to connect a session, and the sessions connected.
#[async_trait]
pub trait ConnectStore: Send + Sync {
    /// Stores a connection and the digest of its link (the browser's way in), both for `ttl`.
    async fn put_connection(&self, id: &str, link: &str, record: &ConnectionRecord, ttl: Duration) -> StoreResult<()>;
    async fn connection(&self, id: &str) -> StoreResult<Option<ConnectionRecord>>;
    /// The connection a link digest opens.
    async fn connection_for_link(&self, link: &str) -> StoreResult<Option<String>>;
    /// Binds the connection to the first browser that opens it; returns the browser it is
    /// bound to (this one, or the one that came first).
    async fn claim_connection(&self, id: &str, browser: &str, ttl: Duration) -> StoreResult<String>;
    /// Records the outcome unless one is recorded; returns the outcome in force.
    async fn settle_connection(
        &self,
        id: &str,
        outcome: &ConnectionOutcome,
        ttl: Duration,
    ) -> StoreResult<ConnectionOutcome>;
    async fn connection_outcome(&self, id: &str) -> StoreResult<Option<ConnectionOutcome>>;
    /// Points a session (by digest) at a grant; returns the grant it pointed at before.
    async fn put_session(&self, key: &str, grant_id: &str, ttl: Duration) -> StoreResult<Option<String>>;
    async fn session(&self, key: &str) -> StoreResult<Option<String>>;
    /// Removes a session; returns the grant it pointed at.
    async fn take_session(&self, key: &str) -> StoreResult<Option<String>>;
    /// Announces `event` to servers listening on the store (Redis: PUBLISH on
    /// `<prefix>:connect:<resource>`); the memory store has no listeners.
    async fn publish_connection(&self, resource: &str, event: &str) -> StoreResult<()>;
}

/// What a rotation of a first-form refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This call rotated the token.
    Won,
    /// The token was already rotated at `at`; `successor` while the grace window lasts.
    AlreadyRotated { at: UnixTime, successor: Option<Vec<u8>> },
    /// No such token.
    Unknown,
}

/// A step of a refresh family: the token presented (its generation and digest) and, if it
/// is current, the one that replaces it with the sealed response that carries it.
#[derive(Debug, Clone, Copy)]
pub struct FamilyStep<'a> {
    pub generation: u64,
    pub presented: &'a str,
    pub next: &'a str,
    pub at: UnixTime,
    /// The sealed token response handed out for `next`, replayed within `grace`.
    pub successor: &'a [u8],
    pub grace: Duration,
}

/// What advancing a refresh family found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// This call moved the family to the next generation.
    Won,
    /// The presented token is the previous generation's, rotated at `at`; `successor` while
    /// the grace window lasts.
    AlreadyRotated { at: UnixTime, successor: Option<Vec<u8>> },
    /// The presented token is neither the current nor the previous one; the family is at
    /// `generation`.
    Elsewhere { generation: u64 },
    /// No such grant, no family, or the grant is no longer active.
    Unknown,
}

/// Refresh tokens. Family tokens live in their grant's record (constant size however often
/// the grant is refreshed); first-form tokens, issued before families, have a record each,
/// keyed by digest, until they expire.
#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Starts (or restarts) the family of an existing grant at generation 0 with the token
    /// of digest `current`; `false` when there is no such grant.
    async fn start_family(&self, grant_id: &str, current: &str) -> StoreResult<bool>;
    /// Compare-and-set rotation: when `step.presented` is the current token of generation
    /// `step.generation`, the family moves to `step.next` and the successor is kept for the
    /// grace window. Exactly one of any number of concurrent callers wins; the others see
    /// the winner's rotation and successor.
    async fn advance_family(&self, grant_id: &str, step: FamilyStep<'_>) -> StoreResult<Advance>;
    /// The successor kept by the family's last rotation, while its grace lasts.
    async fn family_successor(&self, grant_id: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Stores a first-form token (only tests and stores written before families do).
    async fn put_refresh(&self, key: &str, rt: &RefreshRecord, ttl: Duration) -> StoreResult<()>;
    async fn refresh(&self, key: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Compare-and-set rotation of a first-form token: an active token becomes rotated at
    /// `at`, and `successor` (the sealed response that replaced it) is kept for `grace`.
    async fn rotate(&self, key: &str, at: UnixTime, successor: &[u8], grace: Duration) -> StoreResult<Rotation>;
    /// The successor kept by `rotate`, while its grace lasts.
    async fn successor(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_refresh(&self, key: &str) -> StoreResult<()>;
}

/// A listing of grants: every grant, or those of one user, client, resource, provider or
/// upstream account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    All,
    /// `provider:subject` (see `GrantInfo::user`).
    User(String),
    Client(String),
    Resource(String),
    Provider(String),
    /// `provider:account` (the upstream login).
    Account(String),
}

impl IndexKey {
    /// The listings a grant belongs to.
    pub fn of(info: &GrantInfo) -> Vec<IndexKey> {
        let mut keys = vec![
            Self::All,
            Self::User(info.user()),
            Self::Client(info.client_id.clone()),
            Self::Resource(info.resource.clone()),
            Self::Provider(info.provider.clone()),
        ];
        if let Some(account) = &info.account {
            keys.push(Self::Account(format!("{}:{account}", info.provider)));
        }
        keys
    }

    /// `(dimension, value)`: how stores name it.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::All => ("all", ""),
            Self::User(v) => ("user", v),
            Self::Client(v) => ("client", v),
            Self::Resource(v) => ("resource", v),
            Self::Provider(v) => ("provider", v),
            Self::Account(v) => ("account", v),
        }
    }
}

/// Where a listing stands: entries come newest first (created at, then id, descending) and a
/// page continues after the last entry of the one before.
pub type IndexPosition = (UnixTime, String);

/// Listings of grants, so that finding a user's, a client's, a resource's, a provider's or an
/// upstream account's grants is a lookup, never a scan of the keyspace.
///
/// An entry is written before its grant (`index_grant`, then `put_grant`): if the grant's write
/// fails, or the grant later expires, the entry dangles, which is harmless (every reader
/// reads the grant and skips the entry) and readers remove it (`unindex`). The other order
/// could leave a grant no listing shows, which an operator could then not find to revoke.
#[async_trait]
pub trait GrantIndex: Send + Sync {
    /// Adds the grant to `keys`, ordered by `created_at`; the listings live at least `ttl`.
    async fn index_grant(
        &self,
        grant_id: &str,
        created_at: UnixTime,
        keys: &[IndexKey],
        ttl: Duration,
    ) -> StoreResult<()>;
    /// Keeps `keys` at least `ttl` more (their grant was extended).
    async fn keep_indexes(&self, keys: &[IndexKey], ttl: Duration) -> StoreResult<()>;
    /// Up to `limit` entries of `key` after `after` (from the newest without it).
    async fn indexed(
        &self,
        key: &IndexKey,
        after: Option<&IndexPosition>,
        limit: usize,
    ) -> StoreResult<Vec<IndexPosition>>;
    /// How many entries `key` has (dangling ones included).
    async fn index_len(&self, key: &IndexKey) -> StoreResult<u64>;
    /// Removes entries whose grant is gone.
    async fn unindex(&self, key: &IndexKey, grant_ids: &[String]) -> StoreResult<()>;
    /// Records the resources now configured (kept `ttl`) and returns those recorded before
    /// that are no longer among them (their grants are ended at start-up). Atomic: of two
    /// replicas starting at once with the same configuration, one sees the removal.
    async fn swap_resources(&self, configured: &[String], ttl: Duration) -> StoreResult<Vec<String>>;
}

/// An audit event as stored: its position in the trail (a cursor) and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: String,
    pub json: String,
}

/// How long, and how many, audit events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub age: Duration,
    /// At most about this many (the oldest leave first).
    pub count: u64,
}

/// Events remembered per user for the account page's recent activity.
pub const USER_EVENTS: usize = 20;

/// The audit trail (Redis: a stream trimmed by age and length).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events (CloudEvents JSON) in order; events older than `kept.age`, and the
    /// oldest beyond `kept.count`, leave.
    /// Returns their ids (cursors), in the same order.
    async fn append_events(&self, events: &[String], kept: Retention) -> StoreResult<Vec<String>>;
    /// Up to `limit` events, newest first, older than the cursor `before` (`None`: from the
    /// newest).
    async fn events(&self, before: Option<&str>, limit: usize) -> StoreResult<Vec<StoredEvent>>;
    /// Remembers that the events `ids` concern `user` (the person's recent activity, for the
    /// account page): the newest `USER_EVENTS` per user, kept as long as the trail keeps events.
    /// Only ids are kept; an id whose event left the trail is skipped when read.
    async fn note_user_events(&self, user: &str, ids: &[String], kept: Retention) -> StoreResult<()>;
    /// `user`'s remembered events still in the trail, newest first.
    async fn user_events(&self, user: &str) -> StoreResult<Vec<StoredEvent>>;
}

/// Everything the broker stores.
#[async_trait]
pub trait Store:
    ClientStore
    + PendingStore
    + CodeStore
    + GrantStore
    + RefreshStore
    + LockStore
    + ActivityStore
    + BrowserStore
    + ConnectStore
    + AuditStore
    + GrantIndex
    + LinkStore
    + SessionStore
    + std::fmt::Debug
{
    /// Whether the backend answers; `/readyz` reports it.
    async fn ping(&self) -> StoreResult<()>;
}
