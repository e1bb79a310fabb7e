//! In-process store: the embedded default for a single process (development, demos).
//!
//! It obeys the same contract as Redis (TTLs, single-use takes, compare-and-set rotation)
//! but nothing survives a restart and replicas do not share it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::clock::{Clock, UnixTime};

/// A map whose entries expire, by the injected clock.
#[derive(Debug)]
struct TtlMap<V> {
    entries: Mutex<HashMap<String, (V, UnixTime)>>,
    writes: AtomicU64,
}

impl<V: Clone> TtlMap<V> {
    fn new() -> Self {
        Self { entries: Mutex::new(HashMap::new()), writes: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (V, UnixTime)>> {
        // A panic while holding the lock cannot leave a map half-updated (every critical
        // section is a single insert/remove), so a poisoned lock is still consistent.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, key: &str, value: V, ttl: Duration, now: UnixTime) {
        let mut map = self.lock();
        // Sweep expired entries now and then so abandoned records do not pile up.
        if self.writes.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            map.retain(|_, (_, exp)| *exp > now);
        }
        map.insert(key.to_owned(), (value, expiry(now, ttl)));
    }

    fn get(&self, key: &str, now: UnixTime) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((v, exp)) if *exp > now => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn take(&self, key: &str, now: UnixTime) -> Option<V> {
        self.lock().remove(key).and_then(|(v, exp)| (exp > now).then_some(v))
    }

    fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Inserts, returning the live entry it replaced.
    fn replace(&self, key: &str, value: V, ttl: Duration, now: UnixTime) -> Option<V> {
        let before = self.lock().insert(key.to_owned(), (value, expiry(now, ttl)));
        before.and_then(|(v, exp)| (exp > now).then_some(v))
    }

    /// Inserts unless a live entry is there; the value in force either way.
    fn insert_once(&self, key: &str, value: V, ttl: Duration, now: UnixTime) -> V {
        let mut map = self.lock();
        match map.get(key) {
            Some((held, exp)) if *exp > now => held.clone(),
            _ => {
                map.insert(key.to_owned(), (value.clone(), expiry(now, ttl)));
                value
            }
        }
    }

    /// Applies `f` to a live entry; `None` when absent or expired.
    fn update<R>(&self, key: &str, now: UnixTime, f: impl FnOnce(&mut V, &mut UnixTime) -> R) -> Option<R> {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some((v, exp)) if *exp > now => Some(f(v, exp)),
            _ => None,
        }
    }
}

fn expiry(now: UnixTime, ttl: Duration) -> UnixTime {
    // Round up: a record must live at least as long as asked.
    let secs = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
    now.saturating_add(secs)
}

#[derive(Debug)]
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    clients: TtlMap<ClientRecord>,
    consents: TtlMap<ConsentRecord>,
    pending: TtlMap<PendingRecord>,
    codes: TtlMap<CodeRecord>,
    used_codes: TtlMap<String>,
    grants: TtlMap<GrantRecord>,
    refresh: TtlMap<RefreshRecord>,
    locks: TtlMap<String>,
    successors: TtlMap<Vec<u8>>,
    /// The successor of each family's last rotation, by grant id.
    family_successors: TtlMap<Vec<u8>>,
    browsers: TtlMap<HashMap<String, String>>,
    connections: TtlMap<ConnectionRecord>,
    /// Link digests, claims (browser digests) and sessions (grant ids), by key.
    connect_links: TtlMap<String>,
    connect_claims: TtlMap<String>,
    connect_outcomes: TtlMap<ConnectionOutcome>,
    sessions: TtlMap<String>,
    /// Connections, the grants made on each, and sign-in sessions.
    links: TtlMap<LinkRecord>,
    link_grants: TtlMap<Vec<String>>,
    logins: TtlMap<SessionRecord>,
    /// Held across the grant and connection maps where Redis runs one script.
    link_lock: Mutex<()>,
    /// The resources configured when this store was last started with.
    resources: Mutex<Vec<String>>,
    activity: Mutex<HashMap<String, UnixTime>>,
    /// Grant listings: (created at, id) per listing.
    indexes: Mutex<HashMap<IndexKey, std::collections::BTreeSet<IndexPosition>>>,
    /// The audit trail, oldest first, and the last sequence number.
    events: Mutex<(std::collections::VecDeque<TrailEntry>, u64)>,
    /// Per user, the ids of their recent events (newest first).
    user_events: Mutex<HashMap<String, std::collections::VecDeque<String>>>,
    /// Admitted dynamic clients and when each lapses; (hour, registrations in it).
    admitted: Mutex<(HashMap<String, UnixTime>, i64, u64)>,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            clients: TtlMap::new(),
            consents: TtlMap::new(),
            pending: TtlMap::new(),
            codes: TtlMap::new(),
            used_codes: TtlMap::new(),
            grants: TtlMap::new(),
            refresh: TtlMap::new(),
            locks: TtlMap::new(),
            successors: TtlMap::new(),
            family_successors: TtlMap::new(),
            browsers: TtlMap::new(),
            connections: TtlMap::new(),
            connect_links: TtlMap::new(),
            connect_claims: TtlMap::new(),
            connect_outcomes: TtlMap::new(),
            sessions: TtlMap::new(),
            links: TtlMap::new(),
            link_grants: TtlMap::new(),
            logins: TtlMap::new(),
            link_lock: Mutex::new(()),
            resources: Mutex::new(Vec::new()),
            activity: Mutex::new(HashMap::new()),
            events: Mutex::new((std::collections::VecDeque::new(), 0)),
            user_events: Mutex::default(),
            indexes: Mutex::new(HashMap::new()),
            admitted: Mutex::new((HashMap::new(), 0, 0)),
        }
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn link_guard(&self) -> MutexGuard<'_, ()> {
        self.link_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps a connection and its grant list at least `ttl` more.
    fn keep_link(&self, link_id: &str, ttl: Duration, now: UnixTime) {
        let at_least = expiry(now, ttl);
        self.links.update(link_id, now, |_, exp| *exp = (*exp).max(at_least));
        self.link_grants.update(link_id, now, |_, exp| *exp = (*exp).max(at_least));
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn admit_client(
        &self,
        client_id: &str,
        expires_at: UnixTime,
        caps: ClientCaps,
        now: UnixTime,
    ) -> StoreResult<Admission> {
        let mut guard = self.admitted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (live, hour, count) = &mut *guard;
        live.retain(|_, lapse| *lapse > now);
        if caps.max_clients > 0 && live.len() as u64 >= caps.max_clients {
            return Ok(Admission::TooManyClients);
        }
        if *hour != now.div_euclid(3600) {
            (*hour, *count) = (now.div_euclid(3600), 0);
        }
        if caps.per_hour > 0 && *count >= caps.per_hour {
            return Ok(Admission::TooManyRegistrations);
        }
        *count += 1;
        live.insert(client_id.to_owned(), expires_at);
        Ok(Admission::Admitted)
    }

    async fn put_client(&self, client: &ClientRecord, ttl: Duration) -> StoreResult<()> {
        self.clients.insert(&client.client_id, client.clone(), ttl, self.now());
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        Ok(self.clients.get(client_id, self.now()))
    }

    async fn touch_client(&self, client_id: &str, ttl: Duration) -> StoreResult<bool> {
        let now = self.now();
        let touched = self.clients.update(client_id, now, |_, exp| *exp = expiry(now, ttl)).is_some();
        if touched {
            let mut guard = self.admitted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(lapse) = guard.0.get_mut(client_id) {
                *lapse = expiry(now, ttl);
            }
        }
        Ok(touched)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        self.admitted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.remove(client_id);
        Ok(self.clients.take(client_id, self.now()).is_some())
    }
}

#[async_trait]
impl PendingStore for MemoryStore {
    async fn put_consent(&self, key: &str, req: &ConsentRecord, ttl: Duration) -> StoreResult<()> {
        self.consents.insert(key, req.clone(), ttl, self.now());
        Ok(())
    }

    async fn take_consent(&self, key: &str) -> StoreResult<Option<ConsentRecord>> {
        Ok(self.consents.take(key, self.now()))
    }

    async fn put_pending(&self, key: &str, req: &PendingRecord, ttl: Duration) -> StoreResult<()> {
        self.pending.insert(key, req.clone(), ttl, self.now());
        Ok(())
    }

    async fn take_pending(&self, key: &str) -> StoreResult<Option<PendingRecord>> {
        Ok(self.pending.take(key, self.now()))
    }
}

#[async_trait]
impl CodeStore for MemoryStore {
    async fn put_code(&self, key: &str, code: &CodeRecord, ttl: Duration) -> StoreResult<()> {
        self.codes.insert(key, code.clone(), ttl, self.now());
        Ok(())
    }

    async fn take_code(&self, key: &str, used_ttl: Duration) -> StoreResult<CodeTake> {
        let now = self.now();
        // Hold the codes lock across take-and-mark so a racing second take sees the marker.
        let mut codes = self.codes.lock();
        if let Some((code, exp)) = codes.remove(key)
            && exp > now
        {
            self.used_codes.insert(key, code.grant_id.clone(), used_ttl, now);
            return Ok(CodeTake::Fresh(code));
        }
        drop(codes);
        Ok(match self.used_codes.get(key, now) {
            Some(grant_id) => CodeTake::Reused { grant_id },
            None => CodeTake::Unknown,
        })
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn put_grant(&self, grant: &GrantRecord, ttl: Duration) -> StoreResult<()> {
        let now = self.now();
        let _guard = self.link_guard();
        if let Some(link) = grant.connection_id() {
            let mut ids = self.link_grants.get(link, now).unwrap_or_default();
            if !ids.contains(&grant.id) {
                ids.push(grant.id.clone());
            }
            self.link_grants.insert(link, ids, ttl, now);
            self.keep_link(link, ttl, now);
        }
        self.grants.insert(&grant.id, grant.clone(), ttl, now);
        Ok(())
    }

    async fn grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let now = self.now();
        let Some(mut grant) = self.grants.get(grant_id, now) else { return Ok(None) };
        if let Some(link_id) = grant.connection_id() {
            let link = self.links.get(link_id, now);
            merge_link(&mut grant, link.as_ref().map(|l| (l.status, l.upstream.as_slice())));
        }
        Ok(Some(grant))
    }

    async fn set_grant_status(&self, grant_id: &str, status: GrantStatus) -> StoreResult<bool> {
        let now = self.now();
        if let Some(link) = connection_of(grant_id)
            && let Some(link_status) = link_status_for(status)
        {
            if self.grants.get(grant_id, now).is_none() {
                return Ok(false);
            }
            self.links.update(link, now, |l, _| {
                if l.status == LinkStatus::Active {
                    l.status = link_status;
                }
            });
            return Ok(true);
        }
        // A revocation is final.
        let set = |g: &mut GrantRecord, _: &mut UnixTime| {
            if g.status != GrantStatus::Revoked {
                g.status = status;
            }
        };
        Ok(self.grants.update(grant_id, now, set).is_some())
    }

    async fn set_grant_ttl(&self, grant_id: &str, ttl: Duration) -> StoreResult<bool> {
        let now = self.now();
        let found = self.grants.update(grant_id, now, |_, exp| *exp = expiry(now, ttl)).is_some();
        if found && let Some(link) = connection_of(grant_id) {
            self.keep_link(link, ttl, now);
        }
        Ok(found)
    }

    async fn set_grant_upstream(&self, grant_id: &str, upstream: &[u8]) -> StoreResult<bool> {
        let now = self.now();
        // A refresh racing a revocation must not bring back the tokens it deleted.
        if let Some(link) = connection_of(grant_id) {
            let _guard = self.link_guard();
            if self.grants.get(grant_id, now).is_none() {
                return Ok(false);
            }
            self.links.update(link, now, |l, _| {
                if l.status != LinkStatus::Ended {
                    l.upstream = upstream.to_vec();
                }
            });
            return Ok(true);
        }
        let set = |g: &mut GrantRecord, _: &mut UnixTime| {
            if g.status != GrantStatus::Revoked {
                g.upstream = upstream.to_vec();
            }
        };
        Ok(self.grants.update(grant_id, now, set).is_some())
    }

    async fn revoke_grant(&self, grant_id: &str, tombstone: &Tombstone, ttl: Duration) -> StoreResult<Revoked> {
        let now = self.now();
        let _guard = self.link_guard();
        let revoke = |g: &mut GrantRecord, exp: &mut UnixTime| {
            if g.tombstone.is_none() {
                g.tombstone = Some(tombstone.clone());
            }
            g.status = GrantStatus::Revoked;
            g.upstream.clear();
            *exp = expiry(now, ttl);
        };
        if self.grants.update(grant_id, now, revoke).is_none() {
            return Ok(Revoked::Missing);
        }
        let Some(link) = connection_of(grant_id) else { return Ok(Revoked::Last) };
        let live: Vec<String> = self
            .link_grants
            .get(link, now)
            .unwrap_or_default()
            .into_iter()
            .filter(|id| self.grants.get(id, now).is_some_and(|g| g.status != GrantStatus::Revoked))
            .collect();
        let last = live.is_empty();
        self.link_grants.update(link, now, |ids, _| ids.retain(|id| id != grant_id));
        if last {
            self.links.update(link, now, |l, _| {
                l.status = LinkStatus::Ended;
                l.upstream.clear();
            });
        }
        Ok(if last { Revoked::Last } else { Revoked::Shared })
    }

    async fn note_use(&self, grant_id: &str, at: Option<UnixTime>, by: &str, count: u64) -> StoreResult<()> {
        self.grants.update(grant_id, self.now(), |g, _| {
            if let Some(at) = at {
                g.usage.last_used_at = Some(at);
                g.usage.last_used_by = Some(by.to_owned());
            }
            g.usage.use_count = g.usage.use_count.saturating_add(count);
        });
        Ok(())
    }

    async fn reseal_grant_upstream(&self, grant_id: &str, expected: &[u8], upstream: &[u8]) -> StoreResult<bool> {
        let mut replaced = false;
        let now = self.now();
        let mut swap = |current: &mut Vec<u8>| {
            if current.as_slice() == expected {
                *current = upstream.to_vec();
                replaced = true;
            }
        };
        match connection_of(grant_id) {
            Some(link) => self.links.update(link, now, |l, _| swap(&mut l.upstream)),
            None => self.grants.update(grant_id, now, |g, _| swap(&mut g.upstream)),
        };
        Ok(replaced)
    }

    async fn scan_grants(&self, _cursor: u64) -> StoreResult<(u64, Vec<String>)> {
        let now = self.now();
        Ok((0, self.grants.lock().iter().filter(|(_, (_, exp))| *exp > now).map(|(id, _)| id.clone()).collect()))
    }
}

/// A grant on a connection as read: the connection's tokens; `Dead` while the connection
/// needs re-authorization or is gone, `Expired` while it is expired.
pub(super) fn merge_link(grant: &mut GrantRecord, link: Option<(LinkStatus, &[u8])>) {
    match link {
        Some((LinkStatus::Active, upstream)) if grant.status != GrantStatus::Revoked => {
            grant.upstream = upstream.to_vec();
        }
        Some((LinkStatus::Expired, _)) if grant.status == GrantStatus::Active => grant.status = GrantStatus::Expired,
        _ if grant.status == GrantStatus::Active => grant.status = GrantStatus::Dead,
        _ => {}
    }
}

/// What a grant's end upstream makes of its connection (every grant on it shares its fate).
pub(super) fn link_status_for(status: GrantStatus) -> Option<LinkStatus> {
    match status {
        GrantStatus::Dead => Some(LinkStatus::NeedsReauth),
        GrantStatus::Expired => Some(LinkStatus::Expired),
        GrantStatus::Active | GrantStatus::Revoked => None,
    }
}

impl MemoryStore {
    /// Stores a connection, kept at least `ttl`; with `only_new`, only where there is none
    /// or an ended one. Whether it did.
    fn store_link(&self, link: &LinkRecord, ttl: Duration, only_new: bool) -> bool {
        let now = self.now();
        let at_least = expiry(now, ttl);
        let mut map = self.links.lock();
        let live = map.get(&link.id).filter(|(_, exp)| *exp > now);
        if only_new && live.is_some_and(|(l, _)| l.status != LinkStatus::Ended) {
            return false;
        }
        let exp = live.map_or(at_least, |(_, exp)| (*exp).max(at_least));
        map.insert(link.id.clone(), (link.clone(), exp));
        true
    }
}

#[async_trait]
impl LinkStore for MemoryStore {
    async fn put_link(&self, link: &LinkRecord, ttl: Duration) -> StoreResult<()> {
        self.store_link(link, ttl, false);
        Ok(())
    }

    async fn create_link(&self, link: &LinkRecord, ttl: Duration) -> StoreResult<bool> {
        Ok(self.store_link(link, ttl, true))
    }

    async fn link(&self, link_id: &str) -> StoreResult<Option<LinkRecord>> {
        Ok(self.links.get(link_id, self.now()))
    }

    async fn link_grants(&self, link_id: &str) -> StoreResult<Vec<String>> {
        Ok(self.link_grants.get(link_id, self.now()).unwrap_or_default())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put_browser_session(&self, key: &str, session: &SessionRecord, ttl: Duration) -> StoreResult<()> {
        self.logins.insert(key, session.clone(), ttl, self.now());
        Ok(())
    }

    async fn browser_session(&self, key: &str) -> StoreResult<Option<SessionRecord>> {
        Ok(self.logins.get(key, self.now()))
    }

    async fn end_browser_session(&self, key: &str) -> StoreResult<()> {
        self.logins.remove(key);
        Ok(())
    }
}

#[async_trait]
impl LockStore for MemoryStore {
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        let now = self.now();
        let mut locks = self.locks.lock();
        if locks.get(name).is_some_and(|(_, exp)| *exp > now) {
            return Ok(false);
        }
        locks.insert(name.to_owned(), (owner.to_owned(), expiry(now, ttl)));
        Ok(true)
    }

    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()> {
        let mut locks = self.locks.lock();
        if locks.get(name).is_some_and(|(held_by, _)| held_by == owner) {
            locks.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl BrowserStore for MemoryStore {
    async fn remember_grant(
        &self,
        browser: &str,
        client_id: &str,
        resource: &str,
        grant_id: &str,
        ttl: Duration,
    ) -> StoreResult<()> {
        let now = self.now();
        let mut known = self.browsers.get(browser, now).unwrap_or_default();
        known.insert(browser_field(client_id, resource), grant_id.to_owned());
        self.browsers.insert(browser, known, ttl, now);
        Ok(())
    }

    async fn remembered_grant(&self, browser: &str, client_id: &str, resource: &str) -> StoreResult<Option<String>> {
        Ok(self
            .browsers
            .get(browser, self.now())
            .and_then(|known| known.get(&browser_field(client_id, resource)).cloned()))
    }
}

#[async_trait]
impl ActivityStore for MemoryStore {
    async fn mark_used(&self, grant_id: &str, at: UnixTime, _ttl: Duration) -> StoreResult<()> {
        self.activity_map().insert(grant_id.to_owned(), at);
        Ok(())
    }

    async fn used_since(&self, _shard: usize, since: UnixTime, limit: usize) -> StoreResult<Vec<String>> {
        Ok(self.activity_map().iter().filter(|(_, at)| **at >= since).map(|(id, _)| id.clone()).take(limit).collect())
    }

    async fn forget_before(&self, _shard: usize, before: UnixTime) -> StoreResult<()> {
        self.activity_map().retain(|_, at| *at >= before);
        Ok(())
    }
}

impl MemoryStore {
    fn activity_map(&self) -> MutexGuard<'_, HashMap<String, UnixTime>> {
        self.activity.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RefreshStore for MemoryStore {
    async fn start_family(&self, grant_id: &str, current: &str) -> StoreResult<bool> {
        let family = RefreshFamily { generation: 0, current: current.to_owned(), previous: None, rotated_at: None };
        Ok(self.grants.update(grant_id, self.now(), |g, _| g.family = Some(family)).is_some())
    }

    async fn advance_family(&self, grant_id: &str, step: FamilyStep<'_>) -> StoreResult<Advance> {
        let now = self.now();
        // One lock over the check and both writes: a racing caller sees all or nothing.
        let mut grants = self.grants.lock();
        let Some((grant, _)) = grants.get_mut(grant_id).filter(|(_, exp)| *exp > now) else {
            return Ok(Advance::Unknown);
        };
        let Some(family) = grant.family.as_mut().filter(|_| grant.status == GrantStatus::Active) else {
            return Ok(Advance::Unknown);
        };
        if family.generation == step.generation && family.current == step.presented {
            *family = RefreshFamily {
                generation: family.generation + 1,
                current: step.next.to_owned(),
                previous: Some(step.presented.to_owned()),
                rotated_at: Some(step.at),
            };
            self.family_successors.insert(grant_id, step.successor.to_vec(), step.grace, now);
            return Ok(Advance::Won);
        }
        if family.generation == step.generation.saturating_add(1) && family.previous.as_deref() == Some(step.presented)
        {
            let at = family.rotated_at.unwrap_or(0);
            drop(grants);
            return Ok(Advance::AlreadyRotated { at, successor: self.family_successors.get(grant_id, now) });
        }
        Ok(Advance::Elsewhere { generation: family.generation })
    }

    async fn family_successor(&self, grant_id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.family_successors.get(grant_id, self.now()))
    }

    async fn put_refresh(&self, key: &str, rt: &RefreshRecord, ttl: Duration) -> StoreResult<()> {
        self.refresh.insert(key, rt.clone(), ttl, self.now());
        Ok(())
    }

    async fn refresh(&self, key: &str) -> StoreResult<Option<RefreshRecord>> {
        Ok(self.refresh.get(key, self.now()))
    }

    async fn rotate(&self, key: &str, at: UnixTime, successor: &[u8], grace: Duration) -> StoreResult<Rotation> {
        let now = self.now();
        // One lock over the check and both writes: a racing caller sees all or nothing.
        let mut tokens = self.refresh.lock();
        let Some((rt, exp)) = tokens.get_mut(key).filter(|(_, exp)| *exp > now) else {
            return Ok(Rotation::Unknown);
        };
        let _ = exp;
        if rt.status == RefreshStatus::Active {
            rt.status = RefreshStatus::Rotated;
            rt.rotated_at = Some(at);
            self.successors.insert(key, successor.to_vec(), grace, now);
            return Ok(Rotation::Won);
        }
        let rotated_at = rt.rotated_at.unwrap_or(0);
        drop(tokens);
        Ok(Rotation::AlreadyRotated { at: rotated_at, successor: self.successors.get(key, now) })
    }

    async fn successor(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.successors.get(key, self.now()))
    }

    async fn delete_refresh(&self, key: &str) -> StoreResult<()> {
        self.refresh.remove(key);
        Ok(())
    }
}

#[async_trait]
impl ConnectStore for MemoryStore {
    async fn put_connection(&self, id: &str, link: &str, record: &ConnectionRecord, ttl: Duration) -> StoreResult<()> {
        self.connections.insert(id, record.clone(), ttl, self.now());
        self.connect_links.insert(link, id.to_owned(), ttl, self.now());
        Ok(())
    }

    async fn connection(&self, id: &str) -> StoreResult<Option<ConnectionRecord>> {
        Ok(self.connections.get(id, self.now()))
    }

    async fn connection_for_link(&self, link: &str) -> StoreResult<Option<String>> {
        Ok(self.connect_links.get(link, self.now()))
    }

    async fn claim_connection(&self, id: &str, browser: &str, ttl: Duration) -> StoreResult<String> {
        Ok(self.connect_claims.insert_once(id, browser.to_owned(), ttl, self.now()))
    }

    async fn settle_connection(
        &self,
        id: &str,
        outcome: &ConnectionOutcome,
        ttl: Duration,
    ) -> StoreResult<ConnectionOutcome> {
        Ok(self.connect_outcomes.insert_once(id, outcome.clone(), ttl, self.now()))
    }

    async fn connection_outcome(&self, id: &str) -> StoreResult<Option<ConnectionOutcome>> {
        Ok(self.connect_outcomes.get(id, self.now()))
    }

    async fn put_session(&self, key: &str, grant_id: &str, ttl: Duration) -> StoreResult<Option<String>> {
        Ok(self.sessions.replace(key, grant_id.to_owned(), ttl, self.now()))
    }

    async fn session(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self.sessions.get(key, self.now()))
    }

    async fn take_session(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self.sessions.take(key, self.now()))
    }

    async fn publish_connection(&self, _resource: &str, _event: &str) -> StoreResult<()> {
        Ok(())
    }
}

impl MemoryStore {
    fn index_map(&self) -> MutexGuard<'_, HashMap<IndexKey, std::collections::BTreeSet<IndexPosition>>> {
        self.indexes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl GrantIndex for MemoryStore {
    async fn index_grant(
        &self,
        grant_id: &str,
        created_at: UnixTime,
        keys: &[IndexKey],
        _ttl: Duration,
    ) -> StoreResult<()> {
        let mut indexes = self.index_map();
        for key in keys {
            indexes.entry(key.clone()).or_default().insert((created_at, grant_id.to_owned()));
        }
        Ok(())
    }

    async fn keep_indexes(&self, _keys: &[IndexKey], _ttl: Duration) -> StoreResult<()> {
        // Listings here live as long as the process; entries leave when read dangling.
        Ok(())
    }

    async fn indexed(
        &self,
        key: &IndexKey,
        after: Option<&IndexPosition>,
        limit: usize,
    ) -> StoreResult<Vec<IndexPosition>> {
        let indexes = self.index_map();
        let Some(entries) = indexes.get(key) else { return Ok(Vec::new()) };
        Ok(entries.iter().rev().filter(|entry| after.is_none_or(|a| *entry < a)).take(limit).cloned().collect())
    }

    async fn index_len(&self, key: &IndexKey) -> StoreResult<u64> {
        Ok(self.index_map().get(key).map_or(0, |entries| entries.len() as u64))
    }

    async fn swap_resources(&self, configured: &[String], _ttl: Duration) -> StoreResult<Vec<String>> {
        let mut known = self.resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let removed = known.iter().filter(|r| !configured.contains(r)).cloned().collect();
        *known = configured.to_vec();
        Ok(removed)
    }

    async fn unindex(&self, key: &IndexKey, grant_ids: &[String]) -> StoreResult<()> {
        if let Some(entries) = self.index_map().get_mut(key) {
            entries.retain(|(_, id)| !grant_ids.contains(id));
        }
        Ok(())
    }
}

/// An audit event: ((milliseconds, sequence), JSON).
type TrailEntry = ((i64, u64), String);

/// Audit events kept by the memory store (the oldest leave first).
const MEMORY_EVENTS: usize = 100_000;

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_events(&self, events: &[String], kept: Retention) -> StoreResult<Vec<String>> {
        let now_ms = self.now().saturating_mul(1000);
        let oldest = now_ms.saturating_sub(i64::try_from(kept.age.as_millis()).unwrap_or(i64::MAX));
        let cap = usize::try_from(kept.count).unwrap_or(usize::MAX).min(MEMORY_EVENTS);
        let mut trail = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids = Vec::with_capacity(events.len());
        for json in events {
            trail.1 += 1;
            let id = (now_ms, trail.1);
            ids.push(format!("{now_ms}-{}", trail.1));
            trail.0.push_back((id, json.clone()));
        }
        while trail.0.front().is_some_and(|((at, _), _)| *at < oldest) || trail.0.len() > cap {
            trail.0.pop_front();
        }
        Ok(ids)
    }

    async fn note_user_events(&self, user: &str, ids: &[String], _kept: Retention) -> StoreResult<()> {
        let mut all = self.user_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = all.entry(user.to_owned()).or_default();
        for id in ids {
            list.push_front(id.clone());
        }
        list.truncate(crate::store::USER_EVENTS);
        Ok(())
    }

    async fn user_events(&self, user: &str) -> StoreResult<Vec<StoredEvent>> {
        let ids: Vec<String> = {
            let all = self.user_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            all.get(user).map(|l| l.iter().cloned().collect()).unwrap_or_default()
        };
        let trail = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let (at, seq) = id.split_once('-')?;
                let key = (at.parse::<i64>().ok()?, seq.parse::<u64>().ok()?);
                let at = trail.0.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
                Some(StoredEvent { id, json: trail.0[at].1.clone() })
            })
            .collect())
    }

    async fn events(&self, before: Option<&str>, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let before = match before {
            None => None,
            Some(cursor) => match cursor.split_once('-').map(|(a, b)| (a.parse::<i64>(), b.parse::<u64>())) {
                Some((Ok(at), Ok(seq))) => Some((at, seq)),
                _ => return Ok(Vec::new()),
            },
        };
        let trail = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(trail
            .0
            .iter()
            .rev()
            .filter(|(id, _)| before.is_none_or(|b| *id < b))
            .take(limit)
            .map(|((at, seq), json)| StoredEvent { id: format!("{at}-{seq}"), json: json.clone() })
            .collect())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
