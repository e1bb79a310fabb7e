//! Connections on Redis: one hash per connection (`link:{id}`: its record, status `st` and
//! sealed upstream tokens, see `format`) and the grants made on it: fields `g-<rest>` of that
//! hash (format 2) or members of a set, `link-grants:{id}` (format 1; read in either case).
//! A grant on a connection has the connection in its id, so its keys (`grant:{link}-rest`,
//! `next:{link}-rest`) and the connection's share a hash slot: reading a grant with its
//! tokens is one pipeline, and revoking the last grant of a connection one script.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::format::{self, Fields, MEMBER_PREFIX};
use super::{RedisStore, millis, text};
use crate::store::{LinkRecord, LinkStatus, LinkStore, SessionRecord, SessionStore, StoreError, StoreResult};

/// Lists a grant among a connection's (ARGV[2] its id, ARGV[3] its field in the connection's
/// hash, empty for format 1; nothing when ARGV[2] is empty) and keeps the connection and the
/// set at least ARGV[1] ms (never shortens them). KEYS: link, link-grants.
pub(super) const KEEP_LINK: &str = r"
if ARGV[2] ~= '' then
  if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[3], '')
  else
    redis.call('SADD', KEYS[2], ARGV[2])
  end
end
local ms = tonumber(ARGV[1])
for i = 1, 2 do
  local left = redis.call('PTTL', KEYS[i])
  if left ~= -2 and left < ms then redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
";

/// Stores a connection (ARGV[5..]: its record, status and tokens as field, value pairs) in
/// place of the one there, keeping the grants listed in its hash, and keeps it and its grant
/// set at least ARGV[1] ms (never shortens them: other grants may depend on it for longer).
/// With ARGV[2] `1`, only where there is none or an ended one (returns 0 otherwise). With
/// ARGV[3] `1` (format 2), the grants of the set move into the hash (ARGV[4]: the length of
/// the connection id, which their fields leave out). The hash is written afresh, so Redis keeps
/// it compact when its values allow. KEYS: link, link-grants. Run `with_helpers`.
pub(super) const PUT_LINK: &str = r"
if ARGV[2] == '1' then
  local st = redis.call('HGET', KEYS[1], 'st')
  if st and st ~= 'ended' then return 0 end
end
local members = {}
local held = redis.call('HGETALL', KEYS[1])
for i = 1, #held, 2 do
  if string.sub(held[i], 1, 2) == 'g-' then
    members[#members + 1] = held[i]
    members[#members + 1] = held[i + 1]
  end
end
if ARGV[3] == '1' then members_from_set(members, KEYS[2], tonumber(ARGV[4])) end
local left = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if #members > 0 then redis.call('HSET', KEYS[1], unpack(members)) end
local ms = tonumber(ARGV[1])
if left > ms then ms = left end
redis.call('PEXPIRE', KEYS[1], ms)
left = redis.call('PTTL', KEYS[2])
if left ~= -2 and left < ms then redis.call('PEXPIRE', KEYS[2], ms) end
return 1
";

/// Stores a grant on a connection (replacing it whole: ARGV[4..] field, value pairs, kept
/// ARGV[1] ms), lists it (ARGV[2] its id, ARGV[3] its field, as `KEEP_LINK`) among the
/// connection's grants and keeps the connection and the set at least as long.
/// KEYS: grant, link, link-grants.
pub(super) const PUT_LINK_GRANT: &str = r"
local ms = tonumber(ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ms)
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[3], '')
else
  redis.call('SADD', KEYS[3], ARGV[2])
end
for i = 2, 3 do
  local left = redis.call('PTTL', KEYS[i])
  if left ~= -2 and left < ms then redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
";

/// The provider refused a grant's refresh (ARGV[1] `needs_reauth`), or its token expired
/// with nothing to refresh it (`expired`): its connection, and so every grant on it, needs the
/// user again. KEYS: grant, link.
pub(super) const LINK_DEAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], 'st') == 'active' then redis.call('HSET', KEYS[2], 'st', ARGV[1]) end
return 1
";

/// A refresh through a grant stores the connection's new tokens (ARGV: field, value pairs, in
/// place of the tokens in either format), unless the connection ended meanwhile (a
/// revocation's deletion stands). KEYS: grant, link.
pub(super) const LINK_UPSTREAM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local st = redis.call('HGET', KEYS[2], 'st')
if st and st ~= 'ended' then
  redis.call('HDEL', KEYS[2], 'up', 'u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7')
  redis.call('HSET', KEYS[2], unpack(ARGV))
end
return 1
";

/// Revokes a grant on a connection (as `grants::REVOKE`), takes it off the connection's
/// grants (set and hash), and when no live grant is left there deletes the connection's
/// tokens. Sibling grants are read by key built from ARGV[6] (their slot is this one).
/// Returns 0: no such grant, 1: revoked, tokens still used, 2: revoked and the tokens deleted.
/// KEYS: grant, link, link-grants; ARGV: at, by, reason, ttl (ms), grant id, sibling key
/// base, connection id length, the grant's field in the connection's hash.
pub(super) const REVOKE_LINK_GRANT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'st') ~= 'revoked' or redis.call('HEXISTS', KEYS[1], 'ra') == 0 then
  redis.call('HSET', KEYS[1], 'st', 'revoked', 'ra', ARGV[1], 'rb', ARGV[2], 'rr', ARGV[3])
end
redis.call('HDEL', KEYS[1], 'up')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SREM', KEYS[3], ARGV[5])
redis.call('HDEL', KEYS[2], ARGV[8])
local skip = tonumber(ARGV[7])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local st = redis.call('HGET', ARGV[6] .. string.sub(id, skip + 1), 'st')
  if st and st ~= 'revoked' then return 1 end
  -- Ended or expired: no longer a user of the tokens.
  redis.call('SREM', KEYS[3], id)
end
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(field, 1, 2) == 'g-' then
    local st = redis.call('HGET', ARGV[6] .. string.sub(field, 2), 'st')
    if st and st ~= 'revoked' then return 1 end
    redis.call('HDEL', KEYS[2], field)
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HDEL', KEYS[2], 'up', 'u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7')
  redis.call('HSET', KEYS[2], 'st', 'ended')
end
return 2
";

impl RedisStore {
    /// Runs `PUT_LINK_GRANT` (see there): one script for the grant and its connection.
    pub(super) async fn put_link_grant(
        &self,
        link: &str,
        grant_id: &str,
        fields: Fields,
        ttl: Duration,
    ) -> StoreResult<()> {
        let keys = [self.gkey("grant", grant_id), self.key("link", link), self.key("link-grants", link)];
        let (script, id, member) = (&self.put_link_grant, grant_id.to_owned(), self.member_field(link, grant_id));
        let _: i64 = self
            .run(async move |mut c| {
                let mut call = script.key(&keys[0]);
                call.key(&keys[1]).key(&keys[2]).arg(millis(ttl)).arg(id).arg(member);
                for (name, value) in &fields {
                    call.arg(name).arg(value.as_slice());
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// Runs `KEEP_LINK` (see there).
    pub(super) async fn keep_link(&self, link: &str, grant_id: Option<&str>, ttl: Duration) -> StoreResult<()> {
        let (link_key, members) = (self.key("link", link), self.key("link-grants", link));
        let member = grant_id.map(|id| self.member_field(link, id)).unwrap_or_default();
        let (script, id) = (&self.keep_link, grant_id.unwrap_or_default().to_owned());
        let _: i64 = self
            .run(async move |mut c| {
                script.key(&link_key).key(&members).arg(millis(ttl)).arg(id).arg(member).invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// The field that lists `grant_id` in its connection's hash when writing format 2; empty
    /// (listed in the set) for format 1.
    fn member_field(&self, link: &str, grant_id: &str) -> String {
        match self.schema {
            format::WriteSchema::V1 => String::new(),
            format::WriteSchema::V2 => format::member_field(link, grant_id),
        }
    }
}

impl RedisStore {
    /// Runs `PUT_LINK` (see there); whether it stored the connection.
    async fn write_link(&self, link: &LinkRecord, ttl: Duration, only_new: bool) -> StoreResult<bool> {
        let (key, members) = (self.key("link", &link.id), self.key("link-grants", &link.id));
        // A connection is replaced whole; one ended has no tokens.
        let mut fields = format::link_info_fields(self.schema, &link.info)?;
        fields.push(("st".to_owned(), link.status.as_str().as_bytes().to_vec()));
        fields.extend(format::upstream_fields(self.schema, &link.upstream));
        let move_members = self.schema == format::WriteSchema::V2;
        let (script, skip) = (&self.put_link, link.id.len());
        let stored: i64 = self
            .run(async move |mut c| {
                let mut call = script.key(&key);
                call.key(&members).arg(millis(ttl)).arg(if only_new { "1" } else { "0" });
                call.arg(if move_members { "1" } else { "0" }).arg(skip);
                for (name, value) in &fields {
                    call.arg(name).arg(value.as_slice());
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(stored == 1)
    }
}

#[async_trait]
impl LinkStore for RedisStore {
    async fn put_link(&self, link: &LinkRecord, ttl: Duration) -> StoreResult<()> {
        self.write_link(link, ttl, false).await.map(drop)
    }

    async fn create_link(&self, link: &LinkRecord, ttl: Duration) -> StoreResult<bool> {
        self.write_link(link, ttl, true).await
    }

    async fn link(&self, link_id: &str) -> StoreResult<Option<LinkRecord>> {
        let hash = self.hgetall(self.key("link", link_id)).await?;
        link_from(link_id, &hash)
    }

    async fn link_grants(&self, link_id: &str) -> StoreResult<Vec<String>> {
        // Listed in the set (format 1) or in the connection's hash (format 2): one round trip.
        let (set, hash) = (self.key("link-grants", link_id), self.key("link", link_id));
        let (mut ids, fields): (Vec<String>, Vec<String>) = self
            .run(async move |mut c| {
                ::redis::pipe().cmd("SMEMBERS").arg(&set).cmd("HKEYS").arg(&hash).query_async(&mut c).await
            })
            .await?;
        ids.extend(
            fields.iter().filter(|f| f.starts_with(MEMBER_PREFIX)).filter_map(|f| format::member_of(link_id, f)),
        );
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

fn link_from(link_id: &str, hash: &HashMap<String, Vec<u8>>) -> StoreResult<Option<LinkRecord>> {
    if hash.is_empty() {
        return Ok(None);
    }
    let status = text(hash, "st")?;
    Ok(Some(LinkRecord {
        id: link_id.to_owned(),
        info: format::link_info(hash)?,
        status: LinkStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown connection status `{status}`")))?,
        upstream: format::upstream_of(hash),
    }))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn put_browser_session(&self, key: &str, session: &SessionRecord, ttl: Duration) -> StoreResult<()> {
        self.put_json(self.key("login", key), session, ttl).await
    }

    async fn browser_session(&self, key: &str) -> StoreResult<Option<SessionRecord>> {
        self.get_json(self.key("login", key)).await
    }

    async fn end_browser_session(&self, key: &str) -> StoreResult<()> {
        let key = self.key("login", key);
        self.run(async move |mut c| ::redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await).await
    }
}
