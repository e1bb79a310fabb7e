//! Grants on Redis: one hash per grant (`grant:{id}`) holding its record (`rec` or `r0`.., see
//! `format`), status (`st`), sealed upstream tokens (`up`, grants made before connections only),
//! refresh family (`fg fc fp fr`, see `refresh`), use
//! (`lu` last used at, `lb` by which resource, `uc` count) and, once revoked, its tombstone
//! (`ra` at, `rb` by, `rr` reason).

use std::collections::HashMap;
use std::time::Duration;

use ::redis::RedisError;
use async_trait::async_trait;

use super::format::{self, Fields, UPSTREAM_FIELDS, WriteSchema};
use super::{RedisStore, SCAN_CURSOR_MASK, SCAN_NODE_SHIFT, SCHEMA, millis, text};
use crate::clock::UnixTime;
use crate::store::{GrantRecord, GrantStatus, GrantStore, GrantUsage, StoreError, StoreResult, Tombstone};
use crate::store::{LinkStatus, Revoked};

/// Sets the status of an existing grant that is not revoked (a revocation is final).
/// ARGV: status.
pub(super) const SET_STATUS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'st') ~= 'revoked' then redis.call('HSET', KEYS[1], 'st', ARGV[1]) end
return 1
";

/// Replaces the sealed upstream tokens of an existing grant that is not revoked (a refresh
/// racing a revocation must not bring back the tokens it deleted). ARGV: sealed tokens.
pub(super) const SET_UPSTREAM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'st') ~= 'revoked' then redis.call('HSET', KEYS[1], 'up', ARGV[1]) end
return 1
";

/// Replaces the sealed upstream tokens of a grant or connection only while they are still the
/// expected ones, in either format (`format`). ARGV: expected, then the new tokens' field,
/// value pairs. Run `with_helpers`.
pub(super) const RESEAL_UP: &str = r"
if held(KEYS[1], 'up', 'u') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'up', 'u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7')
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
";

/// Revokes an existing grant: status, tombstone (unless it has one), sealed tokens deleted,
/// kept for the tombstone's life. ARGV: at, by, reason, ttl (ms).
pub(super) const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'st') ~= 'revoked' or redis.call('HEXISTS', KEYS[1], 'ra') == 0 then
  redis.call('HSET', KEYS[1], 'st', 'revoked', 'ra', ARGV[1], 'rb', ARGV[2], 'rr', ARGV[3])
end
redis.call('HDEL', KEYS[1], 'up')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Records use of an existing grant. ARGV: last used at (empty: unchanged), by, count.
pub(super) const NOTE_USE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'lu', ARGV[1], 'lb', ARGV[2]) end
redis.call('HINCRBY', KEYS[1], 'uc', ARGV[3])
return 1
";

fn usage_fields(usage: &GrantUsage) -> Fields {
    let mut fields = Vec::new();
    if let (Some(at), Some(by)) = (usage.last_used_at, &usage.last_used_by) {
        fields.push(("lu".to_owned(), at.to_string().into_bytes()));
        fields.push(("lb".to_owned(), by.as_bytes().to_vec()));
    }
    if usage.use_count > 0 {
        fields.push(("uc".to_owned(), usage.use_count.to_string().into_bytes()));
    }
    fields
}

fn tombstone_fields(tombstone: &Tombstone) -> Fields {
    vec![
        ("ra".to_owned(), tombstone.at.to_string().into_bytes()),
        ("rb".to_owned(), tombstone.by.as_bytes().to_vec()),
        ("rr".to_owned(), tombstone.reason.as_bytes().to_vec()),
    ]
}

fn optional_text(hash: &HashMap<String, Vec<u8>>, name: &str) -> StoreResult<Option<String>> {
    hash.contains_key(name).then(|| text(hash, name).map(str::to_owned)).transpose()
}

fn optional_number<T: std::str::FromStr>(hash: &HashMap<String, Vec<u8>>, name: &str) -> StoreResult<Option<T>> {
    optional_text(hash, name)?
        .map(|value| value.parse().map_err(|_| StoreError::Corrupt(format!("`{name}` is not a number: `{value}`"))))
        .transpose()
}

#[async_trait]
impl GrantStore for RedisStore {
    async fn put_grant(&self, grant: &GrantRecord, ttl: Duration) -> StoreResult<()> {
        let mut fields = format::grant_info_fields(self.schema, &grant.info)?;
        fields.push(("st".to_owned(), grant.status.as_str().as_bytes().to_vec()));
        // Only grants made before connections hold tokens of their own; they keep one field.
        fields.extend(format::upstream_fields(WriteSchema::V1, &grant.upstream));
        if let Some(family) = &grant.family {
            fields.extend(super::refresh::family_fields(family));
        }
        fields.extend(usage_fields(&grant.usage));
        if let Some(tombstone) = &grant.tombstone {
            fields.extend(tombstone_fields(tombstone));
        }
        // On a connection: one script stores it, lists it among the connection's grants and
        // keeps the connection as long.
        if let Some(link) = grant.connection_id() {
            return self.put_link_grant(link, &grant.id, fields, ttl).await;
        }
        self.put_hash(self.gkey("grant", &grant.id), fields, ttl).await
    }

    async fn grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let Some(link) = crate::store::connection_of(grant_id) else {
            let hash = self.hgetall(self.gkey("grant", grant_id)).await?;
            return grant_from(grant_id, &hash);
        };
        // One round trip: the grant and its connection's status and tokens (same hash slot),
        // the tokens in either format.
        let (grant_key, link_key) = (self.gkey("grant", grant_id), self.key("link", link));
        let (hash, link): (HashMap<String, Vec<u8>>, Vec<Option<Vec<u8>>>) = self
            .run(async move |mut c| {
                ::redis::pipe()
                    .cmd("HGETALL")
                    .arg(&grant_key)
                    .cmd("HMGET")
                    .arg(&link_key)
                    .arg("st")
                    .arg(&UPSTREAM_FIELDS)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(mut grant) = grant_from(grant_id, &hash)? else { return Ok(None) };
        let status =
            link.first().and_then(Option::as_deref).and_then(|s| LinkStatus::parse(std::str::from_utf8(s).ok()?));
        let upstream = status.map(|_| format::upstream_from_values(&link[1..])).unwrap_or_default();
        crate::store::memory::merge_link(&mut grant, status.map(|s| (s, upstream.as_ref())));
        Ok(Some(grant))
    }

    async fn set_grant_status(&self, grant_id: &str, status: GrantStatus) -> StoreResult<bool> {
        if let Some(link) = crate::store::connection_of(grant_id)
            && let Some(link_status) = crate::store::memory::link_status_for(status)
        {
            let (grant_key, link_key) = (self.gkey("grant", grant_id), self.key("link", link));
            let script = &self.link_dead;
            let found: i64 = self
                .run(async move |mut c| {
                    script.key(&grant_key).key(&link_key).arg(link_status.as_str()).invoke_async(&mut c).await
                })
                .await?;
            return Ok(found == 1);
        }
        let key = self.gkey("grant", grant_id);
        let script = &self.set_status;
        let found: i64 =
            self.run(async move |mut c| script.key(&key).arg(status.as_str()).invoke_async(&mut c).await).await?;
        Ok(found == 1)
    }

    async fn set_grant_ttl(&self, grant_id: &str, ttl: Duration) -> StoreResult<bool> {
        let found = self.expire(self.gkey("grant", grant_id), ttl).await?;
        if found && let Some(link) = crate::store::connection_of(grant_id) {
            self.keep_link(link, None, ttl).await?;
        }
        Ok(found)
    }

    async fn set_grant_upstream(&self, grant_id: &str, upstream: &[u8]) -> StoreResult<bool> {
        let key = self.gkey("grant", grant_id);
        let found: i64 = match crate::store::connection_of(grant_id) {
            Some(link) => {
                let (link_key, script) = (self.key("link", link), &self.link_upstream);
                let fields = format::upstream_fields(self.schema, upstream);
                self.run(async move |mut c| {
                    let mut call = script.key(&key);
                    call.key(&link_key);
                    for (name, value) in &fields {
                        call.arg(name).arg(value.as_slice());
                    }
                    call.invoke_async(&mut c).await
                })
                .await?
            }
            None => {
                let (script, upstream) = (&self.set_upstream, upstream.to_vec());
                self.run(async move |mut c| script.key(&key).arg(upstream).invoke_async(&mut c).await).await?
            }
        };
        Ok(found == 1)
    }

    async fn reseal_grant_upstream(&self, grant_id: &str, expected: &[u8], upstream: &[u8]) -> StoreResult<bool> {
        let (key, fields) = match crate::store::connection_of(grant_id) {
            Some(link) => (self.key("link", link), format::upstream_fields(self.schema, upstream)),
            None => (self.gkey("grant", grant_id), format::upstream_fields(WriteSchema::V1, upstream)),
        };
        if fields.is_empty() {
            return Ok(false);
        }
        let (script, expected) = (&self.reseal_up, expected.to_vec());
        self.run(async move |mut c| {
            let mut call = script.key(&key);
            call.arg(expected);
            for (name, value) in &fields {
                call.arg(name).arg(value.as_slice());
            }
            call.invoke_async(&mut c).await
        })
        .await
    }

    async fn revoke_grant(&self, grant_id: &str, tombstone: &Tombstone, ttl: Duration) -> StoreResult<Revoked> {
        let key = self.gkey("grant", grant_id);
        let (by, reason) = (tombstone.by.clone(), tombstone.reason.clone());
        let Some(link) = crate::store::connection_of(grant_id) else {
            let script = &self.revoke_grant;
            let found: i64 = self
                .run(async move |mut c| {
                    script.key(&key).arg(tombstone.at).arg(by).arg(reason).arg(millis(ttl)).invoke_async(&mut c).await
                })
                .await?;
            return Ok(if found == 1 { Revoked::Last } else { Revoked::Missing });
        };
        let (link_key, members) = (self.key("link", link), self.key("link-grants", link));
        // Sibling grants' keys are `<base><id without the connection>`.
        let base = format!("{}:{SCHEMA}:grant:{{{link}}}", self.prefix);
        let (script, id, skip) = (&self.revoke_link_grant, grant_id.to_owned(), link.len());
        let member = format::member_field(link, grant_id);
        let outcome: i64 = self
            .run(async move |mut c| {
                script
                    .key(&key)
                    .key(&link_key)
                    .key(&members)
                    .arg(tombstone.at)
                    .arg(by)
                    .arg(reason)
                    .arg(millis(ttl))
                    .arg(id)
                    .arg(base)
                    .arg(skip)
                    .arg(member)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match outcome {
            0 => Revoked::Missing,
            1 => Revoked::Shared,
            _ => Revoked::Last,
        })
    }

    async fn note_use(&self, grant_id: &str, at: Option<UnixTime>, by: &str, count: u64) -> StoreResult<()> {
        let key = self.gkey("grant", grant_id);
        let script = &self.note_use;
        let (at, by) = (at.map(|t| t.to_string()).unwrap_or_default(), by.to_owned());
        let _: i64 =
            self.run(async move |mut c| script.key(&key).arg(at).arg(by).arg(count).invoke_async(&mut c).await).await?;
        Ok(())
    }

    async fn scan_grants(&self, cursor: u64) -> StoreResult<(u64, Vec<String>)> {
        let (next, keys) = self.scan_keys(cursor, format!("{}:{SCHEMA}:grant:*", self.prefix)).await?;
        // `prefix:v1:grant:{id}`: the id is inside the hash tag.
        let ids = keys.iter().filter_map(|k| k.rsplit_once(":{").map(|(_, id)| id.replacen('}', "", 1))).collect();
        Ok((next, ids))
    }
}

impl RedisStore {
    /// One page of the keys matching `pattern` on every primary: pass 0 first, then the
    /// returned cursor until it is 0 again. A key present for the whole scan is listed at least
    /// once.
    pub(super) async fn scan_keys(&self, cursor: u64, pattern: String) -> StoreResult<(u64, Vec<String>)> {
        // One SCAN per primary, in turn: the top 16 bits of the cursor number the primary
        // (in sorted order), the rest is that primary's own cursor.
        let (node, node_cursor) = ((cursor >> SCAN_NODE_SHIFT) as usize, cursor & SCAN_CURSOR_MASK);
        self.run(async move |mut c| {
            let primaries = c.primaries().await?;
            let Some(primary) = primaries.get(node) else { return Ok((0, Vec::new())) };
            let scan = ::redis::cmd("SCAN").arg(node_cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500).clone();
            let (next, keys): (u64, Vec<String>) = ::redis::from_redis_value(c.on_primary(primary, scan).await?)?;
            if next > SCAN_CURSOR_MASK {
                return Err(RedisError::from((::redis::ErrorKind::Client, "SCAN cursor beyond 48 bits")));
            }
            let next = match (next, node + 1 < primaries.len()) {
                (0, true) => ((node + 1) as u64) << SCAN_NODE_SHIFT,
                (0, false) => 0,
                (next, _) => ((node as u64) << SCAN_NODE_SHIFT) | next,
            };
            Ok((next, keys))
        })
        .await
    }
}

/// A grant from its hash; `None` for an empty (missing) hash.
fn grant_from(grant_id: &str, hash: &HashMap<String, Vec<u8>>) -> StoreResult<Option<GrantRecord>> {
    if hash.is_empty() {
        return Ok(None);
    }
    let status = text(hash, "st")?;
    Ok(Some(GrantRecord {
        id: grant_id.to_owned(),
        info: format::grant_info(hash)?,
        status: GrantStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown grant status `{status}`")))?,
        // A revoked grant's sealed tokens are deleted.
        upstream: format::upstream_of(hash),
        family: super::refresh::family(hash)?,
        usage: GrantUsage {
            last_used_at: optional_number(hash, "lu")?,
            last_used_by: optional_text(hash, "lb")?,
            use_count: optional_number(hash, "uc")?.unwrap_or(0),
        },
        tombstone: match optional_number(hash, "ra")? {
            Some(at) => Some(Tombstone {
                at,
                by: optional_text(hash, "rb")?.unwrap_or_default(),
                reason: optional_text(hash, "rr")?.unwrap_or_default(),
            }),
            None => None,
        },
    }))
}
