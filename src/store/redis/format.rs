//! How a grant's and a connection's records sit in their Redis hashes: the two record formats.
//!
//! Format 1 (every version so far): the record as JSON in one field, `rec`, and a connection's
//! sealed upstream tokens in one field, `up`; the ids of a connection's grants in a set of its
//! own, `link-grants:{id}`. Both values are longer than Redis's `hash-max-listpack-value` (64
//! bytes by default), so Redis keeps these hashes as hash tables, a separately allocated
//! string per field.
//!
//! Format 2: the record as MessagePack (a version byte, then the fields by position) cut into
//! pieces of at most 64 bytes (`r0`, `r1`, ...), the sealed tokens likewise (`u0`..`u7`,
//! pieces of 64 bytes, longer pieces for token sets over 512 bytes, so that reading them stays
//! one HMGET of a few fields), and the connection's grants as fields of the connection's own hash (`g-<rest of
//! the grant id>`, empty values). Redis keeps such hashes compact (listpack) at its default
//! settings, and a connection is one key instead of two.
//!
//! Readers take either format, field by field; writers write the format `store.write_schema`
//! names and remove the other one's fields, so a hash never holds both.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::store::{ClientSource, GrantInfo, LinkInfo, StoreError, StoreResult};

/// Which record format new records are written in (`store.write_schema`). Both are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteSchema {
    /// JSON records: what every earlier version reads. For a rolling upgrade, until every
    /// replica runs a version that reads format 2.
    #[default]
    V1,
    /// Compact records (see the module documentation).
    V2,
}

impl WriteSchema {
    pub fn parse(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// Largest piece of a format-2 value: Redis's default `hash-max-listpack-value`.
const PIECE: usize = 64;
/// The sealed upstream tokens are cut into at most this many pieces (so a reader asks for a
/// fixed list of fields).
pub(super) const UPSTREAM_PIECES: usize = 8;
/// The first byte of a format-2 record.
const V2_TAG: u8 = 2;
/// The prefix of a connection's fields that list its grants (format 2).
pub(super) const MEMBER_PREFIX: &str = "g-";

/// Lua the scripts that read or move format-2 values share (`with_helpers`): `held(key, single,
/// letter)`, a value kept in one field or in pieces (`single`, else `<letter>0`.. joined; false
/// when neither), and `members_from_set(fields, set, skip)`, which appends a connection's member
/// field for each grant id in the set (`skip`: the length of the connection id they start with)
/// and deletes the set.
const LUA_HELPERS: &str = r"
local function held(key, single, letter)
  local value = redis.call('HGET', key, single)
  if value then return value end
  local parts, i = {}, 0
  while true do
    local part = redis.call('HGET', key, letter .. i)
    if not part then break end
    parts[#parts + 1] = part
    i = i + 1
  end
  if #parts == 0 then return false end
  return table.concat(parts)
end
local function members_from_set(fields, set, skip)
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    fields[#fields + 1] = 'g' .. string.sub(id, skip + 1)
    fields[#fields + 1] = ''
  end
  redis.call('DEL', set)
end
";

/// A script's body with the shared Lua functions before it.
pub(super) fn with_helpers(body: &str) -> String {
    format!("{LUA_HELPERS}{body}")
}

/// Field names and values, in the order they are written.
pub(super) type Fields = Vec<(String, Vec<u8>)>;

/// `upstream`'s fields in `schema`: `up`, or pieces `u0`.. of 64 bytes (more for token sets
/// over 512 bytes, never more than `UPSTREAM_PIECES`). Nothing for no tokens.
pub(super) fn upstream_fields(schema: WriteSchema, upstream: &[u8]) -> Fields {
    if upstream.is_empty() {
        return Vec::new();
    }
    match schema {
        WriteSchema::V1 => vec![("up".to_owned(), upstream.to_vec())],
        WriteSchema::V2 => {
            let size = PIECE.max(upstream.len().div_ceil(UPSTREAM_PIECES));
            pieces('u', upstream, size)
        }
    }
}

/// Every field name the sealed upstream tokens may be kept under, in either format (the scripts
/// that replace them name the same list).
pub(super) const UPSTREAM_FIELDS: [&str; UPSTREAM_PIECES + 1] = ["up", "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];

/// The sealed upstream tokens a hash holds (empty when none), in either format.
pub(super) fn upstream_of(hash: &HashMap<String, Vec<u8>>) -> Vec<u8> {
    match hash.get("up") {
        Some(up) => up.clone(),
        None => joined(|name| hash.get(name).map(Vec::as_slice), 'u').unwrap_or_default(),
    }
}

/// The sealed upstream tokens from the values of `UPSTREAM_FIELDS`, in that order.
pub(super) fn upstream_from_values(values: &[Option<Vec<u8>>]) -> Cow<'_, [u8]> {
    match values.first() {
        Some(Some(up)) => Cow::Borrowed(up.as_slice()),
        _ => Cow::Owned(values.iter().skip(1).map_while(Option::as_deref).flatten().copied().collect()),
    }
}

/// A grant's record fields in `schema`.
pub(super) fn grant_info_fields(schema: WriteSchema, info: &GrantInfo) -> StoreResult<Fields> {
    match schema {
        WriteSchema::V1 => Ok(vec![("rec".to_owned(), json(info)?)]),
        WriteSchema::V2 => Ok(pieces('r', &packed(&GrantV2::from(info))?, PIECE)),
    }
}

/// A connection's record fields in `schema`.
pub(super) fn link_info_fields(schema: WriteSchema, info: &LinkInfo) -> StoreResult<Fields> {
    match schema {
        WriteSchema::V1 => Ok(vec![("rec".to_owned(), json(info)?)]),
        WriteSchema::V2 => Ok(pieces('r', &packed(&LinkV2::from(info))?, PIECE)),
    }
}

/// The format a hash's record is in, with its bytes as stored (`None`: no record).
pub(super) fn stored_record(hash: &HashMap<String, Vec<u8>>) -> Option<(WriteSchema, Cow<'_, [u8]>)> {
    match hash.get("rec") {
        Some(rec) => Some((WriteSchema::V1, Cow::Borrowed(rec.as_slice()))),
        None => joined(|name| hash.get(name).map(Vec::as_slice), 'r').map(|bytes| (WriteSchema::V2, Cow::Owned(bytes))),
    }
}

pub(super) fn grant_info(hash: &HashMap<String, Vec<u8>>) -> StoreResult<GrantInfo> {
    match stored_record(hash) {
        Some((WriteSchema::V1, rec)) => super::decode(&rec),
        Some((WriteSchema::V2, bytes)) => unpacked::<GrantV2>(&bytes).map(GrantInfo::from),
        None => Err(StoreError::Corrupt("grant hash has no record".into())),
    }
}

pub(super) fn link_info(hash: &HashMap<String, Vec<u8>>) -> StoreResult<LinkInfo> {
    match stored_record(hash) {
        Some((WriteSchema::V1, rec)) => super::decode(&rec),
        Some((WriteSchema::V2, bytes)) => unpacked::<LinkV2>(&bytes).map(LinkInfo::from),
        None => Err(StoreError::Corrupt("connection hash has no record".into())),
    }
}

/// The field of a connection's hash that lists `grant_id` (format 2): `g-<rest>`.
pub(super) fn member_field(link: &str, grant_id: &str) -> String {
    format!("g{}", &grant_id[link.len()..])
}

/// The grant a connection's member field names.
pub(super) fn member_of(link: &str, field: &str) -> Option<String> {
    field.strip_prefix('g').filter(|rest| rest.starts_with('-')).map(|rest| format!("{link}{rest}"))
}

fn pieces(letter: char, bytes: &[u8], size: usize) -> Fields {
    bytes.chunks(size).enumerate().map(|(i, piece)| (format!("{letter}{i}"), piece.to_vec())).collect()
}

/// The names of the first pieces, so that reading a record (on every introspection) names
/// them without formatting.
const RECORD_PIECES: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];

/// The pieces `<letter>0`, `<letter>1`, .. joined; `None` when there is no first piece.
fn joined<'a>(get: impl Fn(&str) -> Option<&'a [u8]>, letter: char) -> Option<Vec<u8>> {
    let name = |i: usize| match letter {
        'r' if i < RECORD_PIECES.len() => Cow::Borrowed(RECORD_PIECES[i]),
        'u' if i < UPSTREAM_PIECES => Cow::Borrowed(UPSTREAM_FIELDS[i + 1]),
        _ => Cow::Owned(format!("{letter}{i}")),
    };
    let first = get(&name(0))?;
    let mut bytes = Vec::with_capacity(first.len() * 4);
    bytes.extend_from_slice(first);
    for i in 1.. {
        let Some(piece) = get(&name(i)) else { break };
        bytes.extend_from_slice(piece);
    }
    Some(bytes)
}

fn json<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn packed<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    let mut bytes = vec![V2_TAG];
    rmp_serde::encode::write(&mut bytes, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(bytes)
}

fn unpacked<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&V2_TAG, rest)) => rmp_serde::from_slice(rest).map_err(|e| StoreError::Corrupt(e.to_string())),
        Some((tag, _)) => Err(StoreError::Corrupt(format!("unknown record format {tag}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

// The format-2 records: every field by position (no names stored), none skipped. A field
// added later goes at the end with `#[serde(default)]`, so records written before it still read.

#[derive(Serialize, Deserialize)]
struct GrantV2 {
    subject: String,
    client_id: String,
    resource: String,
    provider: String,
    scope: Vec<String>,
    offline: bool,
    created_at: UnixTime,
    account: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
    client_name: Option<String>,
    client_source: Option<ClientSource>,
    redirect_host: Option<String>,
    upstream_scope: Vec<String>,
    owner: Option<String>,
    bound_to_user: bool,
}

impl From<&GrantInfo> for GrantV2 {
    fn from(info: &GrantInfo) -> Self {
        // Every field named, none elided: a field added to `GrantInfo` fails to compile here
        // until the format carries it.
        let GrantInfo {
            subject,
            client_id,
            resource,
            provider,
            scope,
            offline,
            created_at,
            account,
            display_name,
            email,
            client_name,
            client_source,
            redirect_host,
            upstream_scope,
            owner,
            bound_to_user,
        } = info.clone();
        Self {
            subject,
            client_id,
            resource,
            provider,
            scope,
            offline,
            created_at,
            account,
            display_name,
            email,
            client_name,
            client_source,
            redirect_host,
            upstream_scope,
            owner,
            bound_to_user,
        }
    }
}

impl From<GrantV2> for GrantInfo {
    fn from(v: GrantV2) -> Self {
        Self {
            subject: v.subject,
            client_id: v.client_id,
            resource: v.resource,
            provider: v.provider,
            scope: v.scope,
            offline: v.offline,
            created_at: v.created_at,
            account: v.account,
            display_name: v.display_name,
            email: v.email,
            client_name: v.client_name,
            client_source: v.client_source,
            redirect_host: v.redirect_host,
            upstream_scope: v.upstream_scope,
            owner: v.owner,
            bound_to_user: v.bound_to_user,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LinkV2 {
    user: String,
    provider: String,
    subject: String,
    account: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
    scope: Vec<String>,
    created_at: UnixTime,
    connected_at: UnixTime,
    bound_to_user: bool,
}

impl From<&LinkInfo> for LinkV2 {
    fn from(info: &LinkInfo) -> Self {
        let LinkInfo {
            user,
            provider,
            subject,
            account,
            display_name,
            email,
            scope,
            created_at,
            connected_at,
            bound_to_user,
        } = info.clone();
        Self { user, provider, subject, account, display_name, email, scope, created_at, connected_at, bound_to_user }
    }
}

impl From<LinkV2> for LinkInfo {
    fn from(v: LinkV2) -> Self {
        Self {
            user: v.user,
            provider: v.provider,
            subject: v.subject,
            account: v.account,
            display_name: v.display_name,
            email: v.email,
            scope: v.scope,
            created_at: v.created_at,
            connected_at: v.connected_at,
            bound_to_user: v.bound_to_user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> GrantInfo {
        GrantInfo {
            subject: "1000".into(),
            client_id: "https://client.example/metadata.json".into(),
            resource: "https://mcp.example.com/a/rather/long/path/to/the/mcp/endpoint".into(),
            provider: "github".into(),
            scope: vec!["files:read".into(), "files:write".into()],
            offline: true,
            created_at: 1_780_000_000,
            account: Some("ada".into()),
            display_name: Some("Ada Lovelace".into()),
            email: None,
            client_name: Some("Claude".into()),
            client_source: Some(ClientSource::Document),
            redirect_host: Some("claude.ai".into()),
            upstream_scope: vec!["repo".into()],
            owner: None,
            bound_to_user: true,
        }
    }

    fn hash(fields: Fields) -> HashMap<String, Vec<u8>> {
        fields.into_iter().collect()
    }

    #[test]
    fn a_grant_round_trips_in_both_formats_and_format_2_is_pieces_redis_keeps_compact() {
        let v1 = grant_info_fields(WriteSchema::V1, &info()).unwrap();
        let v2 = grant_info_fields(WriteSchema::V2, &info()).unwrap();
        assert_eq!(grant_info(&hash(v1.clone())).unwrap(), info());
        assert_eq!(grant_info(&hash(v2.clone())).unwrap(), info());
        assert!(v2.len() > 1 && v2.iter().all(|(_, value)| value.len() <= PIECE), "{v2:?}");
        let (v1_len, v2_len) = (v1[0].1.len(), v2.iter().map(|(_, v)| v.len()).sum::<usize>());
        assert!(v2_len * 10 < v1_len * 8, "format 2 {v2_len} bytes vs JSON {v1_len}");
    }

    #[test]
    fn a_connection_round_trips_in_both_formats() {
        let link = LinkInfo {
            user: "github:1000".into(),
            provider: "github".into(),
            subject: "1000".into(),
            account: Some("ada".into()),
            display_name: None,
            email: Some("ada@example.com".into()),
            scope: vec!["repo".into()],
            created_at: 1,
            connected_at: 2,
            bound_to_user: false,
        };
        for schema in [WriteSchema::V1, WriteSchema::V2] {
            assert_eq!(link_info(&hash(link_info_fields(schema, &link).unwrap())).unwrap(), link);
        }
    }

    #[test]
    fn sealed_tokens_of_any_length_are_at_most_eight_pieces_and_read_back_whole() {
        for len in [1, 63, 64, 65, 258, 1024, 1025, 5000] {
            let tokens: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let fields = upstream_fields(WriteSchema::V2, &tokens);
            assert!(fields.len() <= UPSTREAM_PIECES, "{len}: {} pieces", fields.len());
            if len <= PIECE * UPSTREAM_PIECES {
                assert!(fields.iter().all(|(_, v)| v.len() <= PIECE), "{len}");
            }
            assert_eq!(upstream_of(&hash(fields.clone())), tokens, "{len}");
            // As the connection read (HMGET of `UPSTREAM_FIELDS`) sees them.
            let by_name = hash(fields);
            let values: Vec<Option<Vec<u8>>> = UPSTREAM_FIELDS.iter().map(|n| by_name.get(*n).cloned()).collect();
            assert_eq!(upstream_from_values(&values), tokens, "{len}");
        }
        assert_eq!(upstream_of(&hash(upstream_fields(WriteSchema::V1, b"sealed"))), b"sealed");
        assert!(upstream_fields(WriteSchema::V2, b"").is_empty());
    }

    #[test]
    fn a_record_in_an_unknown_format_or_cut_short_is_corrupt_not_a_panic() {
        let mut v2 = hash(grant_info_fields(WriteSchema::V2, &info()).unwrap());
        v2.remove("r2");
        assert!(matches!(grant_info(&v2), Err(StoreError::Corrupt(_))));
        let foreign = hash(vec![("r0".into(), vec![9, 1, 2])]);
        assert!(matches!(grant_info(&foreign), Err(StoreError::Corrupt(m)) if m.contains("format 9")));
        assert!(matches!(grant_info(&HashMap::new()), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn member_fields_name_the_grant() {
        let link = "0123456789abcdef01234567";
        let grant = format!("{link}-rest");
        assert_eq!(member_field(link, &grant), "g-rest");
        assert_eq!(member_of(link, "g-rest"), Some(grant));
        assert_eq!(member_of(link, "st"), None);
    }
}
