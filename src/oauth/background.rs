//! Refreshing the upstream tokens of recently used grants before they expire, so that the
//! next tool call does not wait for the provider. Off by default; every replica runs it and
//! the refresh lock keeps it to one refresh per grant.

use std::time::Duration;

use crate::clock::{Clock, UnixTime};
use crate::store::{ActivityStore, GrantStatus};

use super::refresh::{Freshness, RefreshPolicy, Refresher};

#[derive(Debug, Clone, Copy)]
pub struct BackgroundRefresh {
    pub interval: Duration,
    /// Grants introspected within this window count as in use.
    pub window: Duration,
    /// Refresh when the upstream token expires within this many seconds.
    pub lead: i64,
}

/// Grants looked at per round; the rest wait for the next round.
const BATCH: usize = 10_000;

/// One round: refreshes what is about to expire among grants used within the window.
/// Returns how many grants were refreshed.
pub async fn round(
    refresher: Refresher<'_>,
    activity: &dyn ActivityStore,
    config: BackgroundRefresh,
    now: UnixTime,
) -> usize {
    let window = i64::try_from(config.window.as_secs()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window);
    let ids = match activity.used_since(since, BATCH).await {
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
    if let Err(e) = activity.forget_before(since).await {
        tracing::warn!(error = %e, "background refresh: cannot trim the activity record");
    }
    refreshed
}

/// Runs rounds forever, every `interval`.
pub async fn run(refresher: Refresher<'_>, activity: &dyn ActivityStore, clock: &dyn Clock, config: BackgroundRefresh) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let refreshed = round(refresher, activity, config, clock.now()).await;
        if refreshed > 0 {
            tracing::info!(refreshed, "background refresh round");
        }
    }
}
