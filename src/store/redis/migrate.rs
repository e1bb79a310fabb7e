//! Rewriting stored grants and connections in the record format `store.write_schema` names
//! (`tether store migrate`): either way, 1 to 2 or back. Safe while Tether serves (each record
//! is rewritten by one script, only if it is still what was read) and on Cluster (one primary
//! at a time, each script on one hash slot); resumable (a cursor per page, and a record
//! already in the format is left alone).

use super::format::{self, Fields, MEMBER_PREFIX, WriteSchema};
use super::{RedisStore, SCHEMA};
use crate::store::StoreResult;

/// Rewrites one hash (KEYS[1]) in place: only while its record and sealed tokens (in either
/// format, joined) are still ARGV[1] and ARGV[2]; the fields of the other format are dropped,
/// ARGV[6..] (field, value pairs) written, every other field and the time to live kept, and
/// the hash written afresh so that Redis keeps it compact when its values allow. A
/// connection's grants (ARGV[3]) move `in` from its set (KEYS[2]) to its hash, or `out` of the
/// hash to the set (ARGV[4] the connection id, ARGV[5] its length). 1: rewritten, 0: changed
/// or gone meanwhile. Run `with_helpers`.
pub(super) const MIGRATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if (held(KEYS[1], 'rec', 'r') or '') ~= ARGV[1] or (held(KEYS[1], 'up', 'u') or '') ~= ARGV[2] then return 0 end
local kept = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local name = all[i]
  if name ~= 'rec' and name ~= 'up' and not string.match(name, '^[ru]%d+$') then
    if ARGV[3] == 'out' and string.sub(name, 1, 2) == 'g-' then
      redis.call('SADD', KEYS[2], ARGV[4] .. string.sub(name, 2))
    else
      kept[#kept + 1] = name
      kept[#kept + 1] = all[i + 1]
    end
  end
end
if ARGV[3] == 'in' then members_from_set(kept, KEYS[2], tonumber(ARGV[5])) end
local left = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if #kept > 0 then redis.call('HSET', KEYS[1], unpack(kept)) end
if left > 0 then
  redis.call('PEXPIRE', KEYS[1], left)
  if ARGV[3] == 'out' and redis.call('PTTL', KEYS[2]) ~= -2 and redis.call('PTTL', KEYS[2]) < left then
    redis.call('PEXPIRE', KEYS[2], left)
  end
end
return 1
";

/// What a migration did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Grants rewritten (dry run: to rewrite).
    pub grants: u64,
    /// Connections rewritten (dry run: to rewrite).
    pub connections: u64,
    /// Records already in the format.
    pub current: u64,
    /// Records that changed or expired between reading and rewriting: a running Tether wrote
    /// them meanwhile (in its own format); run the migration again for them.
    pub raced: u64,
    /// Records that could not be decoded (foreign or damaged data), left as they are.
    pub unreadable: u64,
}

/// Where a record sits: its hash, and for a connection its id.
enum Found<'a> {
    Grant,
    Link(&'a str),
}

impl RedisStore {
    /// The format this store writes (and a migration rewrites into).
    pub fn write_schema(&self) -> WriteSchema {
        self.schema
    }

    /// One page of the migration into `write_schema()`: pass 0 first, then the returned cursor
    /// until it is 0 again; `dry_run` only counts.
    pub async fn migrate_page(&self, cursor: u64, dry_run: bool, report: &mut MigrationReport) -> StoreResult<u64> {
        let base = format!("{}:{SCHEMA}:", self.prefix);
        let (next, keys) = self.scan_keys(cursor, format!("{base}*")).await?;
        for key in &keys {
            let Some(rest) = key.strip_prefix(&base) else { continue };
            let found = if rest.starts_with("grant:{") {
                Found::Grant
            } else if let Some(id) = rest.strip_prefix("link:{").and_then(|id| id.strip_suffix('}')) {
                Found::Link(id)
            } else {
                continue;
            };
            self.migrate_one(key, &found, dry_run, report).await?;
        }
        Ok(next)
    }

    async fn migrate_one(
        &self,
        key: &str,
        found: &Found<'_>,
        dry_run: bool,
        report: &mut MigrationReport,
    ) -> StoreResult<()> {
        let target = self.schema;
        let hash = self.hgetall(key.to_owned()).await?;
        let Some((held, record)) = format::stored_record(&hash) else {
            // Expired since the scan listed it.
            return Ok(());
        };
        let upstream = format::upstream_of(&hash);
        // A connection is in the format when its record, its tokens and the list of its grants are.
        let set = match found {
            Found::Grant => None,
            Found::Link(id) => Some((self.key("link-grants", id), (*id).to_owned())),
        };
        let current = match &set {
            None => held == target,
            Some((set, _)) => {
                let set = set.clone();
                let in_set: u64 =
                    self.run(async move |mut c| ::redis::cmd("SCARD").arg(&set).query_async(&mut c).await).await?;
                let in_hash = hash.keys().any(|name| name.starts_with(MEMBER_PREFIX));
                let tokens = if hash.contains_key("up") { WriteSchema::V1 } else { WriteSchema::V2 };
                let members = match target {
                    WriteSchema::V1 => !in_hash,
                    WriteSchema::V2 => in_set == 0,
                };
                held == target && (upstream.is_empty() || tokens == target) && members
            }
        };
        if current {
            report.current += 1;
            return Ok(());
        }
        let fields: StoreResult<Fields> = match found {
            // A grant's own tokens (grants made before connections) keep their one field.
            Found::Grant => {
                format::grant_info(&hash).and_then(|info| format::grant_info_fields(target, &info)).map(|mut fields| {
                    fields.extend(format::upstream_fields(WriteSchema::V1, &upstream));
                    fields
                })
            }
            Found::Link(_) => {
                format::link_info(&hash).and_then(|info| format::link_info_fields(target, &info)).map(|mut fields| {
                    fields.extend(format::upstream_fields(target, &upstream));
                    fields
                })
            }
        };
        let Ok(fields) = fields else {
            // Left as it is (and as unreadable to Tether as before); counted for the operator.
            report.unreadable += 1;
            return Ok(());
        };
        let counter = match found {
            Found::Grant => &mut report.grants,
            Found::Link(_) => &mut report.connections,
        };
        if dry_run {
            *counter += 1;
            return Ok(());
        }
        let members = match (&set, target) {
            (None, _) => "",
            (Some(_), WriteSchema::V2) => "in",
            (Some(_), WriteSchema::V1) => "out",
        };
        let (script, key) = (&self.migrate, key.to_owned());
        let done: i64 = self
            .run(async move |mut c| {
                let mut call = script.key(&key);
                let (link, skip) = match &set {
                    Some((set, id)) => {
                        call.key(set);
                        (id.clone(), id.len())
                    }
                    None => (String::new(), 0),
                };
                call.arg(record.as_ref()).arg(upstream.as_slice()).arg(members).arg(link).arg(skip);
                for (name, value) in &fields {
                    call.arg(name).arg(value.as_slice());
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        if done == 1 {
            *counter += 1;
        } else {
            report.raced += 1;
        }
        Ok(())
    }
}
