//! Refresh tokens on Redis: families in their grant's hash, first-form records by digest.
//!
//! A family is four fields of the grant hash (`fg` generation, `fc` current digest, `fp`
//! previous digest, `fr` when the previous was rotated) and one short-lived key beside it,
//! `next:{grant}`, holding the last rotation's sealed successor for the grace window. Both
//! share the grant's hash tag, so the compare-and-set is one script on one slot, on Cluster
//! as on one server. Nothing else is written per refresh.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::{RedisStore, decode, encode, field, millis, text};
use crate::clock::UnixTime;
use crate::store::{
    Advance, FamilyStep, RefreshFamily, RefreshRecord, RefreshStatus, RefreshStore, Rotation, StoreError, StoreResult,
};

/// Starts a family in an existing grant: generation 0, no previous token.
/// KEYS[1] the grant; ARGV: digest of the current token.
pub(super) const START_FAMILY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'fp', 'fr')
redis.call('HSET', KEYS[1], 'fg', 0, 'fc', ARGV[1])
return 1
";

/// Compare-and-set for a family: only the current token of an active grant moves the family
/// on, and its successor is kept (KEYS[2], same hash slot) for the grace window. The previous
/// generation's token answers with when it was rotated and its successor if the window has
/// not closed; any other token with the generation the family is at.
/// KEYS[1] the grant, KEYS[2] its successor; ARGV: generation, presented digest, next digest,
/// now, sealed successor, grace (ms).
pub(super) const ADVANCE_FAMILY: &str = r"
local f = redis.call('HMGET', KEYS[1], 'st', 'fg', 'fc', 'fp', 'fr')
if f[1] ~= 'active' or not f[2] then return {0} end
local at, asked = tonumber(f[2]), tonumber(ARGV[1])
if at == asked and f[3] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'fg', at + 1, 'fc', ARGV[3], 'fp', ARGV[2], 'fr', ARGV[4])
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
  return {1}
end
if at == asked + 1 and f[4] == ARGV[2] then
  local successor = redis.call('GET', KEYS[2])
  if successor then return {2, f[5], successor} end
  return {2, f[5]}
end
return {3, f[2]}
";

/// Compare-and-set for a first-form token: only an active token becomes rotated, and its
/// successor is kept (KEYS[2], same hash slot) for the grace window. A token already rotated
/// answers with when, and with its successor if the window has not closed.
pub(super) const ROTATE: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {0} end
if st == 'active' then
  redis.call('HSET', KEYS[1], 'st', 'rotated', 'rat', ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return {1}
end
local successor = redis.call('GET', KEYS[2])
if successor then return {2, redis.call('HGET', KEYS[1], 'rat'), successor} end
return {2, redis.call('HGET', KEYS[1], 'rat')}
";

/// The grant hash fields of a family.
pub(super) fn family_fields(family: &RefreshFamily) -> super::format::Fields {
    let mut fields = vec![
        ("fg".to_owned(), family.generation.to_string().into_bytes()),
        ("fc".to_owned(), family.current.as_bytes().to_vec()),
    ];
    if let (Some(previous), Some(at)) = (&family.previous, family.rotated_at) {
        fields.push(("fp".to_owned(), previous.as_bytes().to_vec()));
        fields.push(("fr".to_owned(), at.to_string().into_bytes()));
    }
    fields
}

/// The family a grant hash holds, if any.
pub(super) fn family(hash: &HashMap<String, Vec<u8>>) -> StoreResult<Option<RefreshFamily>> {
    if !hash.contains_key("fg") {
        return Ok(None);
    }
    let previous = hash.contains_key("fp").then(|| text(hash, "fp").map(str::to_owned)).transpose()?;
    let rotated_at = hash.contains_key("fr").then(|| number(hash, "fr")).transpose()?;
    Ok(Some(RefreshFamily {
        generation: number(hash, "fg")?,
        current: text(hash, "fc")?.to_owned(),
        previous,
        rotated_at,
    }))
}

fn number<T: std::str::FromStr>(hash: &HashMap<String, Vec<u8>>, name: &str) -> StoreResult<T> {
    let value = text(hash, name)?;
    value.parse().map_err(|_| StoreError::Corrupt(format!("`{name}` is not a number: `{value}`")))
}

impl RedisStore {
    /// The key of the successor a family's last rotation keeps (the grant's hash slot).
    fn family_successor_key(&self, grant_id: &str) -> String {
        self.gkey("next", grant_id)
    }
}

#[async_trait]
impl RefreshStore for RedisStore {
    async fn start_family(&self, grant_id: &str, current: &str) -> StoreResult<bool> {
        let (key, current) = (self.gkey("grant", grant_id), current.to_owned());
        let script = &self.start_family;
        let started: i64 =
            self.run(async move |mut c| script.key(&key).arg(current).invoke_async(&mut c).await).await?;
        Ok(started == 1)
    }

    async fn advance_family(&self, grant_id: &str, step: FamilyStep<'_>) -> StoreResult<Advance> {
        let (key, successor_key) = (self.gkey("grant", grant_id), self.family_successor_key(grant_id));
        let script = &self.advance_family;
        let (presented, next, successor) = (step.presented.to_owned(), step.next.to_owned(), step.successor.to_vec());
        let reply: Vec<::redis::Value> = self
            .run(async move |mut c| {
                script
                    .key(&key)
                    .key(&successor_key)
                    .arg(step.generation)
                    .arg(presented)
                    .arg(next)
                    .arg(step.at)
                    .arg(successor)
                    .arg(millis(step.grace))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let int = |i: usize| reply.get(i).and_then(|v| ::redis::from_redis_value_ref::<i64>(v).ok());
        Ok(match int(0) {
            Some(1) => Advance::Won,
            Some(2) => Advance::AlreadyRotated {
                at: int(1).unwrap_or(0),
                successor: reply.get(2).and_then(|v| ::redis::from_redis_value_ref::<Vec<u8>>(v).ok()),
            },
            Some(3) => Advance::Elsewhere { generation: int(1).and_then(|g| u64::try_from(g).ok()).unwrap_or(0) },
            _ => Advance::Unknown,
        })
    }

    async fn family_successor(&self, grant_id: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = self.family_successor_key(grant_id);
        self.run(async move |mut c| ::redis::cmd("GET").arg(&key).query_async(&mut c).await).await
    }

    async fn put_refresh(&self, key: &str, rt: &RefreshRecord, ttl: Duration) -> StoreResult<()> {
        let status = match rt.status {
            RefreshStatus::Active => "active",
            RefreshStatus::Rotated => "rotated",
        };
        let fields = vec![("rec".to_owned(), encode(rt)?), ("st".to_owned(), status.as_bytes().to_vec())];
        self.put_hash(self.key("refresh", key), fields, ttl).await
    }

    async fn refresh(&self, key: &str) -> StoreResult<Option<RefreshRecord>> {
        let hash = self.hgetall(self.key("refresh", key)).await?;
        if hash.is_empty() {
            return Ok(None);
        }
        let mut rt: RefreshRecord = decode(field(&hash, "rec")?)?;
        if text(&hash, "st")? == "rotated" {
            rt.status = RefreshStatus::Rotated;
            rt.rotated_at = text(&hash, "rat")?.parse().ok();
        }
        Ok(Some(rt))
    }

    async fn rotate(&self, key: &str, at: UnixTime, successor: &[u8], grace: Duration) -> StoreResult<Rotation> {
        let key = self.key("refresh", key);
        let successor_key = format!("{key}:next");
        let script = &self.rotate;
        let successor = successor.to_vec();
        let reply: Vec<::redis::Value> = self
            .run(async move |mut c| {
                script
                    .key(&key)
                    .key(&successor_key)
                    .arg(at)
                    .arg(successor)
                    .arg(millis(grace))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let int = |i: usize| reply.get(i).and_then(|v| ::redis::from_redis_value_ref::<i64>(v).ok());
        match int(0) {
            Some(1) => Ok(Rotation::Won),
            Some(2) => Ok(Rotation::AlreadyRotated {
                at: int(1).unwrap_or(0),
                successor: reply.get(2).and_then(|v| ::redis::from_redis_value_ref::<Vec<u8>>(v).ok()),
            }),
            _ => Ok(Rotation::Unknown),
        }
    }

    async fn successor(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = format!("{}:next", self.key("refresh", key));
        self.run(async move |mut c| ::redis::cmd("GET").arg(&key).query_async(&mut c).await).await
    }

    async fn delete_refresh(&self, key: &str) -> StoreResult<()> {
        let key = self.key("refresh", key);
        self.run(async move |mut c| ::redis::cmd("DEL").arg(&key).query_async(&mut c).await).await
    }
}
