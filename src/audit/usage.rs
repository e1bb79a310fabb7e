//! Coalescing the hot path: credential releases and grant use.
//!
//! Introspection releases an upstream credential on every MCP tool call, so one event per
//! release would be most of the trail and a Redis write per call. Per grant and resource, the
//! first release of an interval is an event of its own (who got which credential, at once);
//! the rest of the interval are counted and reported together when it ends. A grant's
//! `last_used_at`/`last_used_by` is written on the first use of an interval and its
//! `use_count` once per interval: at most two writes per grant per interval, off the response
//! path.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::UnixTime;

/// What a release is, for the one who reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The first of its interval: report it now.
    First,
    /// Counted into the interval's summary.
    Counted,
}

/// A release's particulars, kept for the interval's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub grant_id: String,
    pub resource: String,
    pub client_id: String,
    pub user: String,
    pub provider: String,
    pub thumbprint: String,
}

/// An interval that ended with releases beyond its first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub released: Released,
    /// Releases after the first.
    pub more: u64,
    pub from: UnixTime,
    pub until: UnixTime,
}

#[derive(Debug)]
struct Tally {
    released: Released,
    started: UnixTime,
    last: UnixTime,
    more: u64,
}

/// Per grant, per resource, the releases of the current interval.
#[derive(Debug)]
pub struct Usage {
    interval: i64,
    tallies: Mutex<HashMap<String, HashMap<String, Tally>>>,
}

impl Usage {
    pub fn new(interval_secs: i64) -> Self {
        Self { interval: interval_secs.max(1), tallies: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Tally>>> {
        // Every critical section is one insert or update: a poisoned map is still consistent.
        self.tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a release of `grant_id` to `resource` at `now`; `describe` is called only for
    /// the first of an interval (the hot path allocates nothing otherwise).
    pub fn release(
        &self,
        grant_id: &str,
        resource: &str,
        now: UnixTime,
        describe: impl FnOnce() -> Released,
    ) -> (Release, Option<Released>) {
        let mut tallies = self.lock();
        if let Some(tally) = tallies.get_mut(grant_id).and_then(|per| per.get_mut(resource))
            && now < tally.started + self.interval
        {
            tally.more += 1;
            tally.last = now;
            return (Release::Counted, None);
        }
        let released = describe();
        let tally = Tally { released: released.clone(), started: now, last: now, more: 0 };
        tallies.entry(grant_id.to_owned()).or_default().insert(resource.to_owned(), tally);
        (Release::First, Some(released))
    }

    /// Takes the intervals that have ended by `now` (all of them with `everything`, at
    /// shutdown); those with releases beyond their first come back as summaries.
    pub fn ended(&self, now: UnixTime, everything: bool) -> Vec<Summary> {
        let mut tallies = self.lock();
        let mut summaries = Vec::new();
        tallies.retain(|_, per| {
            per.retain(|_, t| {
                let over = everything || now >= t.started + self.interval;
                if over && t.more > 0 {
                    let released = t.released.clone();
                    summaries.push(Summary { released, more: t.more, from: t.started, until: t.last });
                }
                !over
            });
            !per.is_empty()
        });
        summaries
    }

    /// Intervals in progress.
    pub fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(usage: &Usage, grant: &str, resource: &str, at: UnixTime) -> Release {
        usage.release(grant, resource, at, || released(grant, resource)).0
    }

    fn released(grant: &str, resource: &str) -> Released {
        Released {
            grant_id: grant.into(),
            resource: resource.into(),
            client_id: "c".into(),
            user: "u".into(),
            provider: "p".into(),
            thumbprint: "t".into(),
        }
    }

    #[test]
    fn the_first_release_of_an_interval_is_reported_and_the_rest_summed_when_it_ends() {
        let usage = Usage::new(60);
        assert_eq!(release(&usage, "g", "r", 1_000), Release::First);
        for at in 1_001..1_050 {
            assert_eq!(release(&usage, "g", "r", at), Release::Counted);
        }
        assert_eq!(release(&usage, "g", "other", 1_010), Release::First, "per resource");
        assert_eq!(release(&usage, "h", "r", 1_010), Release::First, "per grant");
        assert!(usage.ended(1_059, false).is_empty(), "not over yet");
        let summaries = usage.ended(1_060, false);
        assert_eq!(summaries.len(), 1, "intervals with only their first release need no summary");
        assert_eq!((summaries[0].more, summaries[0].from, summaries[0].until), (49, 1_000, 1_049));
        assert_eq!(usage.len(), 2, "the intervals still running");
        usage.ended(1_070, false);
        assert!(usage.is_empty());
        assert_eq!(release(&usage, "g", "r", 1_071), Release::First, "a new interval");
    }

    #[test]
    fn everything_is_taken_at_shutdown() {
        let usage = Usage::new(60);
        release(&usage, "g", "r", 1_000);
        release(&usage, "g", "r", 1_001);
        assert_eq!(usage.ended(1_002, true).len(), 1);
        assert!(usage.is_empty());
    }
}
