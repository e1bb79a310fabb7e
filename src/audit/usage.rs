//! Coalescing what happens on every call: credential releases and token refreshes.
//!
//! Introspection releases an upstream credential on every MCP tool call and clients refresh
//! every few minutes, so one event each would make the trail (and Redis) grow with traffic.
//! Per grant and channel (the MCP server a credential goes to, or the refresh token), the
//! first act of an interval is an event of its own, at once (who got which credential, when);
//! the rest of the interval is counted and reported as one event when it ends. A grant's
//! `last_used_at`/`last_used_by` is written on the first release of an interval and its
//! `use_count` once per interval, off the response path.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::UnixTime;

use super::Event;

/// What a release of a grant's upstream credential to a resource names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub grant_id: String,
    pub resource: String,
    pub client_id: String,
    pub user: String,
    pub provider: String,
    pub thumbprint: String,
}

/// An interval that ended with acts beyond its first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The interval's first event, to describe the rest with.
    pub event: Event,
    /// Acts after the first.
    pub more: u64,
    pub from: UnixTime,
    pub until: UnixTime,
}

#[derive(Debug)]
struct Tally {
    event: Event,
    started: UnixTime,
    last: UnixTime,
    more: u64,
}

/// Per grant, per channel, the acts of the current interval.
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

    /// Counts an act of `grant_id` on `channel` at `now`. The first of an interval comes back
    /// as the event `describe` makes (which is called only then: the hot path allocates
    /// nothing otherwise); the others are counted.
    pub fn count(
        &self,
        grant_id: &str,
        channel: &str,
        now: UnixTime,
        describe: impl FnOnce() -> Event,
    ) -> Option<Event> {
        let mut tallies = self.lock();
        if let Some(tally) = tallies.get_mut(grant_id).and_then(|per| per.get_mut(channel))
            && now < tally.started + self.interval
        {
            tally.more += 1;
            tally.last = now;
            return None;
        }
        let event = describe();
        let tally = Tally { event: event.clone(), started: now, last: now, more: 0 };
        tallies.entry(grant_id.to_owned()).or_default().insert(channel.to_owned(), tally);
        Some(event)
    }

    /// Takes the intervals that have ended by `now` (all of them with `everything`, at
    /// shutdown); those with acts beyond their first come back as summaries.
    pub fn ended(&self, now: UnixTime, everything: bool) -> Vec<Summary> {
        let mut tallies = self.lock();
        let mut summaries = Vec::new();
        tallies.retain(|_, per| {
            per.retain(|_, t| {
                let over = everything || now >= t.started + self.interval;
                if over && t.more > 0 {
                    summaries.push(Summary { event: t.event.clone(), more: t.more, from: t.started, until: t.last });
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
    use super::super::{Actor, EventType, Outcome};
    use super::*;

    fn count(usage: &Usage, grant: &str, channel: &str, at: UnixTime) -> bool {
        let event = || Event::new(EventType::CredentialReleased, Actor::system(), Outcome::Success, at).grant(grant);
        usage.count(grant, channel, at, event).is_some()
    }

    #[test]
    fn the_first_act_of_an_interval_is_reported_and_the_rest_summed_when_it_ends() {
        let usage = Usage::new(60);
        assert!(count(&usage, "g", "r", 1_000), "the first is an event");
        for at in 1_001..1_050 {
            assert!(!count(&usage, "g", "r", at), "the rest are counted");
        }
        assert!(count(&usage, "g", "other", 1_010), "per channel");
        assert!(count(&usage, "h", "r", 1_010), "per grant");
        assert!(usage.ended(1_059, false).is_empty(), "not over yet");
        let summaries = usage.ended(1_060, false);
        assert_eq!(summaries.len(), 1, "intervals with only their first act need no summary");
        assert_eq!((summaries[0].more, summaries[0].from, summaries[0].until), (49, 1_000, 1_049));
        assert_eq!(summaries[0].event.data.grant_id.as_deref(), Some("g"));
        assert_eq!(usage.len(), 2, "the intervals still running");
        usage.ended(1_070, false);
        assert!(usage.is_empty());
        assert!(count(&usage, "g", "r", 1_071), "a new interval");
    }

    #[test]
    fn everything_is_taken_at_shutdown() {
        let usage = Usage::new(60);
        count(&usage, "g", "r", 1_000);
        count(&usage, "g", "r", 1_001);
        assert_eq!(usage.ended(1_002, true).len(), 1);
        assert!(usage.is_empty());
    }
}
