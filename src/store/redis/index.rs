//! Grant listings on Redis: a sorted set per listing (`idx:<dimension>:{<value>}`), members
//! grant ids scored by creation time. Each listing is its own key (its own slot on Cluster);
//! entries are written before their grant, so a failure between the two leaves an entry
//! without a grant, which readers skip and remove (see `GrantIndex`).

/// Replaces the set of configured resources (KEYS[1]) with ARGV[2..], keeps it ARGV[1] ms,
/// and returns the members it had that are not among them.
pub(super) const SWAP_RESOURCES: &str = r"
local configured = {}
for i = 2, #ARGV do configured[ARGV[i]] = true end
local removed = {}
for _, r in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not configured[r] then table.insert(removed, r) end
end
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  redis.call('SADD', KEYS[1], unpack(ARGV, 2))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return removed
";

use std::time::Duration;

use async_trait::async_trait;

use super::{RedisStore, SCHEMA, millis};
use crate::clock::UnixTime;
use crate::store::{GrantIndex, IndexKey, IndexPosition, StoreResult};

/// Adds an entry and makes the listing live at least ARGV[3] ms more. KEYS[1] the listing;
/// ARGV: score, member, ttl (ms).
pub(super) const INDEX_ADD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// Entries fetched beyond a page, to step over those sharing the last entry's second.
const TIES: usize = 32;

impl RedisStore {
    /// Runs one pipeline per listing, all at once: each listing is its own slot on Cluster,
    /// where one pipeline cannot span slots.
    async fn each(&self, pipes: Vec<::redis::Pipeline>) -> StoreResult<()> {
        self.run(async move |c| {
            let runs = pipes.iter().map(|pipe| {
                let mut c = c.clone();
                async move { pipe.query_async::<()>(&mut c).await }
            });
            futures_util::future::join_all(runs).await.into_iter().collect::<Result<Vec<()>, _>>().map(|_| ())
        })
        .await
    }

    fn index_key(&self, key: &IndexKey) -> String {
        match key.parts() {
            ("all", _) => format!("{}:{SCHEMA}:idx:{{all}}", self.prefix),
            (dimension, value) => format!("{}:{SCHEMA}:idx:{dimension}:{{{value}}}", self.prefix),
        }
    }
}

#[async_trait]
impl GrantIndex for RedisStore {
    async fn index_grant(
        &self,
        grant_id: &str,
        created_at: UnixTime,
        keys: &[IndexKey],
        ttl: Duration,
    ) -> StoreResult<()> {
        // One script call per listing (each its own slot on Cluster), all at once.
        let names: Vec<String> = keys.iter().map(|key| self.index_key(key)).collect();
        let (script, member, ttl) = (&self.index_add, grant_id.to_owned(), millis(ttl));
        self.run(async move |c| {
            let calls = names.iter().map(|name| {
                let (mut c, member) = (c.clone(), member.clone());
                async move { script.key(name).arg(created_at).arg(member).arg(ttl).invoke_async::<i64>(&mut c).await }
            });
            futures_util::future::join_all(calls).await.into_iter().collect::<Result<Vec<i64>, _>>().map(|_| ())
        })
        .await
    }

    async fn keep_indexes(&self, keys: &[IndexKey], ttl: Duration) -> StoreResult<()> {
        let pipes = keys.iter().map(|key| {
            let mut pipe = ::redis::pipe();
            pipe.cmd("PEXPIRE").arg(self.index_key(key)).arg(millis(ttl)).arg("GT").ignore();
            pipe
        });
        self.each(pipes.collect()).await
    }

    async fn indexed(
        &self,
        key: &IndexKey,
        after: Option<&IndexPosition>,
        limit: usize,
    ) -> StoreResult<Vec<IndexPosition>> {
        let name = self.index_key(key);
        let mut out = Vec::new();
        let mut offset = 0usize;
        let max = after.map_or_else(|| "+inf".to_owned(), |(score, _)| score.to_string());
        loop {
            let (name, max, want) = (name.clone(), max.clone(), limit + TIES);
            let batch: Vec<(String, i64)> = self
                .run(async move |mut c| {
                    ::redis::cmd("ZREVRANGEBYSCORE")
                        .arg(&name)
                        .arg(max)
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(want)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let fetched = batch.len();
            for (id, score) in batch {
                // Entries of the last page's second come in descending id order: skip up to it.
                let past = after.is_none_or(|(at, last)| score < *at || (score == *at && id.as_str() < last.as_str()));
                if past && out.len() < limit {
                    out.push((score, id));
                }
            }
            if out.len() >= limit || fetched < limit + TIES {
                return Ok(out);
            }
            offset += fetched;
        }
    }

    async fn index_len(&self, key: &IndexKey) -> StoreResult<u64> {
        let name = self.index_key(key);
        self.run(async move |mut c| ::redis::cmd("ZCARD").arg(&name).query_async(&mut c).await).await
    }

    async fn swap_resources(&self, configured: &[String], ttl: Duration) -> StoreResult<Vec<String>> {
        let key = format!("{}:{}:resources", self.prefix, super::SCHEMA);
        let configured = configured.to_vec();
        let script = &self.swap_resources;
        self.run(async move |mut c| script.key(&key).arg(super::millis(ttl)).arg(configured).invoke_async(&mut c).await)
            .await
    }

    async fn unindex(&self, key: &IndexKey, grant_ids: &[String]) -> StoreResult<()> {
        if grant_ids.is_empty() {
            return Ok(());
        }
        let (name, members) = (self.index_key(key), grant_ids.to_vec());
        let _: i64 =
            self.run(async move |mut c| ::redis::cmd("ZREM").arg(&name).arg(members).query_async(&mut c).await).await?;
        Ok(())
    }
}
