//! Redis store: the production backend.
//!
//! Keys are `{prefix}:v1:{kind}:{...}`; keys one operation touches together share a hash tag
//! so that the same commands work on Redis Cluster. Every command runs under a deadline: a
//! Redis that stops answering becomes `StoreError::Unavailable`, never a hung request.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::{RedisError, Script};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::redis_conn::{Conn, Source};
use super::*;

mod audit;
mod format;
mod grants;
mod index;
mod links;
mod migrate;
mod refresh;

pub use format::WriteSchema;
pub use migrate::MigrationReport;

const SCHEMA: &str = "v1";

/// `scan_grants` cursors: primary index above this bit, that primary's SCAN cursor below.
const SCAN_NODE_SHIFT: u32 = 48;
const SCAN_CURSOR_MASK: u64 = (1 << SCAN_NODE_SHIFT) - 1;

/// Takes a code and leaves a replay marker naming its grant, atomically (one hash slot).
const TAKE_CODE: &str = r"
local v = redis.call('GETDEL', KEYS[1])
if v then
  local rec = cjson.decode(v)
  redis.call('SET', KEYS[2], rec['grant_id'], 'PX', ARGV[1])
  return {1, v}
end
local g = redis.call('GET', KEYS[2])
if g then return {2, g} end
return {0}
";

/// Admits a dynamic client against the caps: KEYS[1] is a sorted set of live clients scored
/// by when they lapse (the set itself expires with its last member), KEYS[2] this hour's
/// registration counter (one hash slot).
/// ARGV: client id, lapse time, now, max clients, per hour (0 = unlimited).
const ADMIT_CLIENT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local max = tonumber(ARGV[4])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 1 end
local per_hour = tonumber(ARGV[5])
if per_hour > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= per_hour then return 2 end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 3600)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1)
return 0
";

/// Moves a client's lapse time in the live-client index (`XX`: only a client it holds),
/// by Redis's clock. KEYS[1] the index; ARGV: client id, seconds from now.
const RELAPSE_CLIENT: &str = r"
local lapse = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[2])
local moved = redis.call('ZADD', KEYS[1], 'XX', 'CH', lapse, ARGV[1])
if moved == 1 then redis.call('EXPIREAT', KEYS[1], lapse + 1, 'GT') end
return moved
";

/// Releases a lock only if the caller still holds it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Sets KEYS[1] unless it exists; returns the value in force either way.
const SET_ONCE: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

pub struct RedisStore {
    source: Source,
    home: crate::home::Home,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    prefix: String,
    timeout: Duration,
    /// The record format new grants and connections are written in (both are read).
    schema: WriteSchema,
    take_code: Script,
    set_status: Script,
    set_upstream: Script,
    revoke_grant: Script,
    note_use: Script,
    index_add: Script,
    rotate: Script,
    advance_family: Script,
    start_family: Script,
    unlock: Script,
    set_once: Script,
    admit_client: Script,
    reseal_up: Script,
    migrate: Script,
    relapse_client: Script,
    keep_link: Script,
    put_link: Script,
    put_link_grant: Script,
    link_dead: Script,
    link_upstream: Script,
    revoke_link_grant: Script,
    swap_resources: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Call from the runtime that outlives the HTTP workers (Tether's main one).
    /// Connects lazily: Tether starts (and reports not-ready) while Redis is down, and the
    /// connection is re-established in the background when Redis comes back.
    pub fn connect(target: &RedisTarget, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let source = Source::new(target, timeout).map_err(|e| StoreError::Unavailable(describe(&e)))?;
        Ok(Self {
            source,
            home: crate::home::Home::here(),
            metrics: None,
            prefix: prefix.to_owned(),
            timeout,
            schema: WriteSchema::default(),
            take_code: Script::new(TAKE_CODE),
            set_status: Script::new(grants::SET_STATUS),
            set_upstream: Script::new(grants::SET_UPSTREAM),
            revoke_grant: Script::new(grants::REVOKE),
            note_use: Script::new(grants::NOTE_USE),
            index_add: Script::new(index::INDEX_ADD),
            rotate: Script::new(refresh::ROTATE),
            advance_family: Script::new(refresh::ADVANCE_FAMILY),
            start_family: Script::new(refresh::START_FAMILY),
            unlock: Script::new(UNLOCK),
            set_once: Script::new(SET_ONCE),
            admit_client: Script::new(ADMIT_CLIENT),
            reseal_up: Script::new(&format::with_helpers(grants::RESEAL_UP)),
            migrate: Script::new(&format::with_helpers(migrate::MIGRATE)),
            relapse_client: Script::new(RELAPSE_CLIENT),
            keep_link: Script::new(links::KEEP_LINK),
            put_link: Script::new(&format::with_helpers(links::PUT_LINK)),
            put_link_grant: Script::new(links::PUT_LINK_GRANT),
            link_dead: Script::new(links::LINK_DEAD),
            link_upstream: Script::new(links::LINK_UPSTREAM),
            revoke_link_grant: Script::new(links::REVOKE_LINK_GRANT),
            swap_resources: Script::new(index::SWAP_RESOURCES),
        })
    }

    /// Writes new grants and connections in `schema` (`store.write_schema`).
    #[must_use]
    pub fn with_write_schema(mut self, schema: WriteSchema) -> Self {
        self.schema = schema;
        self
    }

    /// Records the latency and failures of every operation.
    #[must_use]
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{SCHEMA}:{kind}:{{{id}}}", self.prefix)
    }

    /// A key of a grant: `{id}` for grants that hold their own tokens, `{connection}-rest`
    /// for grants on a connection, so that they share the connection's hash slot.
    fn gkey(&self, kind: &str, grant_id: &str) -> String {
        match connection_of(grant_id) {
            Some(link) => format!("{}:{SCHEMA}:{kind}:{{{link}}}{}", self.prefix, &grant_id[link.len()..]),
            None => self.key(kind, grant_id),
        }
    }

    /// The one sorted set of recently used grants (background refresh).
    /// Part `shard` of the recent-use record: its own hash tag, so the parts spread over a
    /// Cluster's slots (and primaries) instead of making one hot slot.
    fn recent_key(&self, shard: usize) -> String {
        format!("{}:{SCHEMA}:recent:{{r{shard:02}}}", self.prefix)
    }

    /// The keys part `shard` is read from: its own, and for the first part also the one key of
    /// versions that kept the record in one (until its uses age out).
    fn recent_keys(&self, shard: usize) -> impl Iterator<Item = String> {
        let legacy = (shard == 0).then(|| format!("{}:{SCHEMA}:recent", self.prefix));
        std::iter::once(self.recent_key(shard)).chain(legacy)
    }

    /// Runs one Redis exchange under the store deadline.
    async fn run<T>(&self, op: impl AsyncFnOnce(Conn) -> Result<T, RedisError>) -> StoreResult<T> {
        let started = std::time::Instant::now();
        // A shared connection's driver and reconnections run on the home runtime, not on the
        // HTTP worker that happens to ask first (see `crate::home`); a worker's own
        // connection runs on the worker.
        let exchange = async {
            match self.source.local() {
                Some(conn) => op(conn).await,
                None => self.home.run(async { op(self.source.conn().await?).await }).await,
            }
        };
        let (result, failure) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(value)) => (Ok(value), None),
            Ok(Err(e)) => {
                self.source.failed(Some(&e));
                (Err(StoreError::Unavailable(describe(&e))), Some("unavailable"))
            }
            Err(_) => {
                self.source.failed(None);
                let message = format!("no answer within {} ms", self.timeout.as_millis());
                (Err(StoreError::Unavailable(message)), Some("timeout"))
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.store_operation(started.elapsed(), failure);
        }
        result
    }

    async fn put_json<T: Serialize>(&self, key: String, value: &T, ttl: Duration) -> StoreResult<()> {
        let json = encode(value)?;
        self.run(async move |mut c| {
            ::redis::cmd("SET").arg(&key).arg(json).arg("PX").arg(millis(ttl)).query_async(&mut c).await
        })
        .await
    }

    async fn take_json<T: DeserializeOwned>(&self, key: String) -> StoreResult<Option<T>> {
        let raw: Option<Vec<u8>> =
            self.run(async move |mut c| ::redis::cmd("GETDEL").arg(&key).query_async(&mut c).await).await?;
        raw.map(|bytes| decode(&bytes)).transpose()
    }

    async fn get_json<T: DeserializeOwned>(&self, key: String) -> StoreResult<Option<T>> {
        let raw: Option<Vec<u8>> =
            self.run(async move |mut c| ::redis::cmd("GET").arg(&key).query_async(&mut c).await).await?;
        raw.map(|bytes| decode(&bytes)).transpose()
    }

    /// Replaces a hash with `fields` and gives it `ttl`, atomically (MULTI/EXEC).
    async fn put_hash(&self, key: String, fields: format::Fields, ttl: Duration) -> StoreResult<()> {
        self.run(async move |mut c| {
            let mut pipe = ::redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            pipe.cmd("HSET").arg(&key);
            for (name, value) in &fields {
                pipe.arg(name).arg(value.as_slice());
            }
            pipe.ignore().cmd("PEXPIRE").arg(&key).arg(millis(ttl)).ignore();
            pipe.query_async(&mut c).await
        })
        .await
    }

    /// PEXPIRE: `false` when the key does not exist.
    async fn expire(&self, key: String, ttl: Duration) -> StoreResult<bool> {
        self.run(async move |mut c| ::redis::cmd("PEXPIRE").arg(&key).arg(millis(ttl)).query_async(&mut c).await).await
    }

    async fn hgetall(&self, key: String) -> StoreResult<HashMap<String, Vec<u8>>> {
        self.run(async move |mut c| ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await).await
    }
}

/// Error text for logs: the redis crate's messages name the failing operation, never values.
fn describe(e: &RedisError) -> String {
    e.to_string()
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn field<'a>(hash: &'a HashMap<String, Vec<u8>>, name: &str) -> StoreResult<&'a [u8]> {
    hash.get(name).map(Vec::as_slice).ok_or_else(|| StoreError::Corrupt(format!("hash has no `{name}` field")))
}

fn text<'a>(hash: &'a HashMap<String, Vec<u8>>, name: &str) -> StoreResult<&'a str> {
    std::str::from_utf8(field(hash, name)?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedisStore {
    /// The live-client index (a sorted set; its members expire by score).
    fn client_index(&self) -> String {
        format!("{}:{SCHEMA}:{{clients}}:live", self.prefix)
    }
}

#[async_trait]
impl ClientStore for RedisStore {
    async fn admit_client(
        &self,
        client_id: &str,
        expires_at: UnixTime,
        caps: ClientCaps,
        now: UnixTime,
    ) -> StoreResult<Admission> {
        let index = self.client_index();
        let counter = format!("{}:{SCHEMA}:{{clients}}:hour:{}", self.prefix, now.div_euclid(3600));
        let script = &self.admit_client;
        let client_id = client_id.to_owned();
        let verdict: i64 = self
            .run(async move |mut c| {
                script
                    .key(&index)
                    .key(&counter)
                    .arg(client_id)
                    .arg(expires_at)
                    .arg(now)
                    .arg(caps.max_clients)
                    .arg(caps.per_hour)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match verdict {
            1 => Admission::TooManyClients,
            2 => Admission::TooManyRegistrations,
            _ => Admission::Admitted,
        })
    }

    async fn put_client(&self, client: &ClientRecord, ttl: Duration) -> StoreResult<()> {
        self.put_json(self.key("client", &client.client_id), client, ttl).await
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.get_json(self.key("client", client_id)).await
    }

    async fn touch_client(&self, client_id: &str, ttl: Duration) -> StoreResult<bool> {
        let touched = self.expire(self.key("client", client_id), ttl).await?;
        if touched {
            let (index, member, script) = (self.client_index(), client_id.to_owned(), &self.relapse_client);
            let _: i64 = self
                .run(async move |mut c| script.key(&index).arg(member).arg(ttl.as_secs()).invoke_async(&mut c).await)
                .await?;
        }
        Ok(touched)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let key = self.key("client", client_id);
        let removed: u64 = self.run(async move |mut c| ::redis::cmd("DEL").arg(&key).query_async(&mut c).await).await?;
        let (index, member) = (self.client_index(), client_id.to_owned());
        let _: u64 =
            self.run(async move |mut c| ::redis::cmd("ZREM").arg(&index).arg(member).query_async(&mut c).await).await?;
        Ok(removed > 0)
    }
}

#[async_trait]
impl PendingStore for RedisStore {
    async fn put_consent(&self, key: &str, req: &ConsentRecord, ttl: Duration) -> StoreResult<()> {
        self.put_json(self.key("consent", key), req, ttl).await
    }

    async fn take_consent(&self, key: &str) -> StoreResult<Option<ConsentRecord>> {
        self.take_json(self.key("consent", key)).await
    }

    async fn put_pending(&self, key: &str, req: &PendingRecord, ttl: Duration) -> StoreResult<()> {
        self.put_json(self.key("pending", key), req, ttl).await
    }

    async fn take_pending(&self, key: &str) -> StoreResult<Option<PendingRecord>> {
        self.take_json(self.key("pending", key)).await
    }
}

#[async_trait]
impl CodeStore for RedisStore {
    async fn put_code(&self, key: &str, code: &CodeRecord, ttl: Duration) -> StoreResult<()> {
        self.put_json(self.key("code", key), code, ttl).await
    }

    async fn take_code(&self, key: &str, used_ttl: Duration) -> StoreResult<CodeTake> {
        let code_key = self.key("code", key);
        let used_key = format!("{code_key}:used");
        let script = &self.take_code;
        let (tag, value): (u8, Option<Vec<u8>>) = self
            .run(async move |mut c| {
                let reply: Vec<::redis::Value> =
                    script.key(&code_key).key(&used_key).arg(millis(used_ttl)).invoke_async(&mut c).await?;
                let tag = reply.first().map(::redis::from_redis_value_ref::<u8>).transpose()?;
                let value = reply.get(1).map(::redis::from_redis_value_ref::<Vec<u8>>).transpose()?;
                Ok((tag.unwrap_or(0), value))
            })
            .await?;
        match (tag, value) {
            (1, Some(bytes)) => Ok(CodeTake::Fresh(decode(&bytes)?)),
            (2, Some(grant)) => Ok(CodeTake::Reused {
                grant_id: String::from_utf8(grant).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            }),
            _ => Ok(CodeTake::Unknown),
        }
    }
}

#[async_trait]
impl LockStore for RedisStore {
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        // Same hash tag as the grant the lock is about (`name` is a grant id).
        let key = self.key("lock", name);
        let owner = owner.to_owned();
        let taken: Option<String> = self
            .run(async move |mut c| {
                ::redis::cmd("SET").arg(&key).arg(owner).arg("NX").arg("PX").arg(millis(ttl)).query_async(&mut c).await
            })
            .await?;
        Ok(taken.is_some())
    }

    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()> {
        let key = self.key("lock", name);
        let script = &self.unlock;
        let owner = owner.to_owned();
        let _: i64 = self.run(async move |mut c| script.key(&key).arg(owner).invoke_async(&mut c).await).await?;
        Ok(())
    }
}

#[async_trait]
impl BrowserStore for RedisStore {
    async fn remember_grant(
        &self,
        browser: &str,
        client_id: &str,
        resource: &str,
        grant_id: &str,
        ttl: Duration,
    ) -> StoreResult<()> {
        let key = self.key("browser", browser);
        let field = browser_field(client_id, resource);
        let grant_id = grant_id.to_owned();
        self.run(async move |mut c| {
            ::redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&key)
                .arg(field)
                .arg(grant_id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(millis(ttl))
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn remembered_grant(&self, browser: &str, client_id: &str, resource: &str) -> StoreResult<Option<String>> {
        let key = self.key("browser", browser);
        let field = browser_field(client_id, resource);
        self.run(async move |mut c| ::redis::cmd("HGET").arg(&key).arg(field).query_async(&mut c).await).await
    }
}

/// Parts of the recent-use record (see `ActivityStore`).
const ACTIVITY_SHARDS: usize = 16;

#[async_trait]
impl ActivityStore for RedisStore {
    fn shards(&self) -> usize {
        ACTIVITY_SHARDS
    }

    async fn mark_used(&self, grant_id: &str, at: UnixTime, ttl: Duration) -> StoreResult<()> {
        let key = self.recent_key(crate::store::activity_shard(grant_id, ACTIVITY_SHARDS));
        let member = grant_id.to_owned();
        self.run(async move |mut c| {
            ::redis::pipe()
                .cmd("ZADD")
                .arg(&key)
                .arg(at)
                .arg(member)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(millis(ttl))
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn used_since(&self, shard: usize, since: UnixTime, limit: usize) -> StoreResult<Vec<String>> {
        let mut ids = Vec::new();
        for key in self.recent_keys(shard) {
            let left = limit.saturating_sub(ids.len());
            let found: Vec<String> = self
                .run(async move |mut c| {
                    ::redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(since)
                        .arg("+inf")
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(left)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            ids.extend(found);
        }
        Ok(ids)
    }

    async fn forget_before(&self, shard: usize, before: UnixTime) -> StoreResult<()> {
        for key in self.recent_keys(shard) {
            let bound = format!("({before}");
            let () = self
                .run(async move |mut c| {
                    ::redis::cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(bound).query_async(&mut c).await
                })
                .await?;
        }
        Ok(())
    }
}

impl RedisStore {
    /// `value` at `key` unless a value is there; the value in force.
    async fn set_once(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreResult<Vec<u8>> {
        let script = &self.set_once;
        self.run(async move |mut c| script.key(&key).arg(value).arg(millis(ttl)).invoke_async(&mut c).await).await
    }
}

#[async_trait]
impl ConnectStore for RedisStore {
    async fn put_connection(&self, id: &str, link: &str, record: &ConnectionRecord, ttl: Duration) -> StoreResult<()> {
        self.put_json(self.key("connection", id), record, ttl).await?;
        self.put_json(self.key("connect-link", link), &id, ttl).await
    }

    async fn connection(&self, id: &str) -> StoreResult<Option<ConnectionRecord>> {
        self.get_json(self.key("connection", id)).await
    }

    async fn connection_for_link(&self, link: &str) -> StoreResult<Option<String>> {
        self.get_json(self.key("connect-link", link)).await
    }

    async fn claim_connection(&self, id: &str, browser: &str, ttl: Duration) -> StoreResult<String> {
        let held = self.set_once(self.key("connect-claim", id), browser.as_bytes().to_vec(), ttl).await?;
        String::from_utf8(held).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn settle_connection(
        &self,
        id: &str,
        outcome: &ConnectionOutcome,
        ttl: Duration,
    ) -> StoreResult<ConnectionOutcome> {
        let held = self.set_once(self.key("connect-outcome", id), encode(outcome)?, ttl).await?;
        decode(&held)
    }

    async fn connection_outcome(&self, id: &str) -> StoreResult<Option<ConnectionOutcome>> {
        self.get_json(self.key("connect-outcome", id)).await
    }

    async fn put_session(&self, key: &str, grant_id: &str, ttl: Duration) -> StoreResult<Option<String>> {
        let (key, grant_id) = (self.key("connect-session", key), grant_id.to_owned());
        self.run(async move |mut c| {
            ::redis::cmd("SET").arg(&key).arg(grant_id).arg("PX").arg(millis(ttl)).arg("GET").query_async(&mut c).await
        })
        .await
    }

    async fn session(&self, key: &str) -> StoreResult<Option<String>> {
        let key = self.key("connect-session", key);
        self.run(async move |mut c| ::redis::cmd("GET").arg(&key).query_async(&mut c).await).await
    }

    async fn take_session(&self, key: &str) -> StoreResult<Option<String>> {
        let key = self.key("connect-session", key);
        self.run(async move |mut c| ::redis::cmd("GETDEL").arg(&key).query_async(&mut c).await).await
    }

    async fn publish_connection(&self, resource: &str, event: &str) -> StoreResult<()> {
        let channel = format!("{}:connect:{resource}", self.prefix);
        let event = event.to_owned();
        let _: i64 = self
            .run(async move |mut c| ::redis::cmd("PUBLISH").arg(&channel).arg(event).query_async(&mut c).await)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let pong: String = self.run(async move |mut c| ::redis::cmd("PING").query_async(&mut c).await).await?;
        if pong == "PONG" { Ok(()) } else { Err(StoreError::Unavailable(format!("unexpected PING reply `{pong}`"))) }
    }
}
