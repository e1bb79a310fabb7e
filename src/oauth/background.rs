//! Refreshing the upstream tokens of recently used grants before they expire, so that the
//! next tool call does not wait for the provider. Off by default; every replica runs it and
//! the refresh lock keeps it to one refresh per grant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{Clock, UnixTime};
use crate::crypto::random;
use crate::store::{ActivityStore, GrantStatus, LockStore};

use super::refresh::{Freshness, RefreshPolicy, Refresher};

#[derive(Debug, Clone, Copy)]
pub struct BackgroundRefresh {
    pub interval: Duration,
    /// Grants introspected within this window count as in use.
    pub window: Duration,
    /// Refresh when the upstream token expires within this many seconds.
    pub lead: i64,
}

/// Grants looked at per part of the activity record per round; the rest wait for the next.
const BATCH: usize = 10_000;

/// Grants remembered by `Marks` at most (per replica): beyond, uses are written through.
const MARKS_CAP: usize = 200_000;

/// Per replica, when each grant's use was last written to the activity record: introspection
/// writes at most once per grant per `every` (an eighth of the window, at most five minutes),
/// not on every call. A background round looks back `every` further to make up for it.
#[derive(Debug)]
pub struct Marks {
    every: i64,
    last: Mutex<HashMap<String, UnixTime>>,
}

impl Marks {
    pub fn new(window: Duration) -> Self {
        let every = i64::try_from(window.as_secs() / 8).unwrap_or(300).clamp(1, 300);
        Self { every, last: Mutex::new(HashMap::new()) }
    }

    /// How much later than its last use a grant's record may be.
    pub fn slack(&self) -> i64 {
        self.every
    }

    /// Whether a use of `grant_id` at `now` must be written (then it counts as written).
    pub fn due(&self, grant_id: &str, now: UnixTime) -> bool {
        // Each critical section is one lookup or insert: a poisoned map is still consistent.
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&at) = last.get(grant_id)
            && (at..at + self.every).contains(&now)
        {
            return false;
        }
        if last.len() >= MARKS_CAP {
            last.retain(|_, at| now < *at + self.every);
            if last.len() >= MARKS_CAP {
                // More grants in use than remembered: forget and write through for a while.
                last.clear();
            }
        }
        last.insert(grant_id.to_owned(), now);
        true
    }
}

/// What introspection needs to record uses: the record, how long a use counts, the marks.
#[derive(Clone, Copy)]
pub struct Activity<'a> {
    pub store: &'a dyn ActivityStore,
    pub window: Duration,
    pub marks: &'a Marks,
}

impl Activity<'_> {
    /// Records a use of `grant_id` at `now`, unless one was recorded moments ago.
    pub async fn used(&self, grant_id: &str, now: UnixTime) {
        if !self.marks.due(grant_id, now) {
            return;
        }
        if let Err(e) = self.store.mark_used(grant_id, now, self.window).await {
            tracing::warn!(error = %e, "cannot record grant use for background refresh");
        }
    }
}

/// One round: refreshes what is about to expire among grants used within the window (and the
/// marks' slack). Each part of the activity record is taken by one replica per round (a lock
/// living most of an interval), so replicas share the work. Returns how many grants were
/// refreshed.
pub async fn round(
    refresher: Refresher<'_>,
    activity: &dyn ActivityStore,
    locks: &dyn LockStore,
    config: BackgroundRefresh,
    slack: i64,
    now: UnixTime,
) -> usize {
    let window = i64::try_from(config.window.as_secs()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window).saturating_sub(slack);
    let held = config.interval.mul_f64(0.9).max(Duration::from_millis(100));
    let owner = random::token();
    let mut refreshed = 0;
    for shard in 0..activity.shards() {
        match locks.try_lock(&format!("background:{shard}"), &owner, held).await {
            Ok(true) => {}
            Ok(false) => continue, // another replica has this part this round
            Err(e) => {
                tracing::warn!(error = %e, "background refresh: cannot take a part of the activity record");
                continue;
            }
        }
        refreshed += round_of(refresher, activity, config, shard, since, now).await;
    }
    refreshed
}

async fn round_of(
    refresher: Refresher<'_>,
    activity: &dyn ActivityStore,
    config: BackgroundRefresh,
    shard: usize,
    since: UnixTime,
    now: UnixTime,
) -> usize {
    let ids = match activity.used_since(shard, since, BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "background refresh: cannot list recently used grants");
            return 0;
        }
    };
    // With the lead as skew, a token within the lead is refreshed now.
    let eager = Refresher { policy: RefreshPolicy { skew: config.lead, ..refresher.policy }, ..refresher };
    let mut refreshed = 0;
    for id in ids {
        let Ok(Some(grant)) = refresher.grants.grant(&id).await else { continue };
        if grant.status != GrantStatus::Active {
            continue;
        }
        let Some(tokens) = refresher.vault.open(&grant) else { continue };
        if !tokens.expires_within(config.lead, now) {
            continue;
        }
        match eager.ensure_fresh(&grant, tokens, now).await {
            Ok(Freshness::Fresh(_)) => refreshed += 1,
            Ok(Freshness::Dead) => {}
            Err(e) => {
                tracing::warn!(grant = %id, error = %e, "background refresh failed; the next introspection retries")
            }
        }
    }
    if let Err(e) = activity.forget_before(shard, since).await {
        tracing::warn!(error = %e, "background refresh: cannot trim the activity record");
    }
    refreshed
}

/// Runs rounds forever, every `interval`.
pub async fn run(
    refresher: Refresher<'_>,
    activity: &dyn ActivityStore,
    clock: &dyn Clock,
    config: BackgroundRefresh,
    slack: i64,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let refreshed = round(refresher, activity, refresher.locks, config, slack, clock.now()).await;
        if refreshed > 0 {
            tracing::info!(refreshed, "background refresh round");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_in_steady_use_is_written_once_per_interval() {
        let marks = Marks::new(Duration::from_secs(3600)); // every 300 s
        assert_eq!(marks.slack(), 300);
        assert!(marks.due("g1", 1_000), "the first use");
        assert!(!marks.due("g1", 1_001) && !marks.due("g1", 1_299), "uses in the same interval");
        assert!(marks.due("g2", 1_001), "another grant");
        assert!(marks.due("g1", 1_300), "the next interval");
        assert!(marks.due("g1", 900), "a clock that went back is written, not trusted");
        assert_eq!(Marks::new(Duration::from_secs(4)).slack(), 1, "at least a second");
    }

    #[test]
    fn marks_stay_bounded() {
        let marks = Marks::new(Duration::from_secs(80)); // every 10 s
        for i in 0..MARKS_CAP {
            assert!(marks.due(&format!("g{i}"), 0));
        }
        // Full of recent marks: the next is written and the table starts over.
        assert!(marks.due("one-more", 5));
        assert!(marks.last.lock().unwrap().len() <= 1);
        // Full of stale marks: they are swept, the recent kept.
        for i in 0..MARKS_CAP - 1 {
            marks.due(&format!("h{i}"), 6);
        }
        assert!(marks.due("late", 20));
        assert_eq!(marks.last.lock().unwrap().len(), 1, "only the mark of 20 s is recent");
    }
}
