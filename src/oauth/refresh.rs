//! Keeping a grant's upstream access token fresh, once for all replicas.
//!
//! When an introspection finds the upstream token expired (or about to), one replica takes a
//! short Redis lock on the grant and refreshes; the others wait and pick the new token up from
//! the grant record. The lock's TTL frees it if its holder dies. The provider's answer decides
//! the grant's fate: a refusal (4xx) ends it (`Dead`: introspection inactive, the client's
//! next refresh `invalid_grant`), an outage leaves it alone (503 now, fine later).

use std::time::{Duration, Instant};

use crate::clock::UnixTime;
use crate::crypto::random;
use crate::store::{GrantRecord, GrantStatus, GrantStore, LockStore};
use crate::upstream::{Providers, UpstreamError, UpstreamTokens};

use super::error::{ErrorCode, OAuthError};
use super::vault::Vault;
use crate::audit::{Actor, Event, EventType, Outcome};

/// How eagerly and how patiently upstream tokens are refreshed.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Refresh when the access token expires within this many seconds.
    pub skew: i64,
    /// Lease of the refresh lock; longer than any provider's timeout.
    pub lock_ttl: Duration,
    /// How long to wait for another replica's refresh before answering 503.
    pub wait: Duration,
}

/// What refreshing found.
#[derive(Debug)]
pub enum Freshness {
    Fresh(UpstreamTokens),
    /// The upstream provider no longer honours the grant.
    Dead,
}

/// How often a waiting caller looks for the other replica's result.
const POLL: Duration = Duration::from_millis(25);

#[derive(Clone, Copy)]
pub struct Refresher<'a> {
    pub grants: &'a dyn GrantStore,
    pub locks: &'a dyn LockStore,
    pub providers: &'a Providers,
    pub vault: &'a Vault,
    pub policy: RefreshPolicy,
    pub audit: &'a crate::audit::Auditor,
}

fn unavailable() -> OAuthError {
    OAuthError::new(ErrorCode::TemporarilyUnavailable, "the upstream provider is unavailable; retry shortly")
}

/// An upstream error code, as far as an audit event may repeat it: short, printable.
fn truncate(error: &str) -> String {
    error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect()
}

impl Refresher<'_> {
    fn event(&self, kind: EventType, outcome: Outcome, grant: &GrantRecord, now: UnixTime) -> Event {
        Event::new(kind, Actor::system(), outcome, now)
            .grant(&grant.id)
            .user(grant.info.user())
            .client(&grant.info.client_id)
            .resource(&grant.info.resource)
            .provider(&grant.info.provider)
    }

    /// `tokens` as they are when fresh enough, otherwise refreshed (here or by another replica).
    pub async fn ensure_fresh(
        &self,
        grant: &GrantRecord,
        tokens: UpstreamTokens,
        now: UnixTime,
    ) -> Result<Freshness, OAuthError> {
        if !tokens.expires_within(self.policy.skew, now) {
            // Key rotation: tokens sealed under a key being retired move to the active key
            // the first time they are used. (A refresh below seals under it anyway.)
            if self.vault.is_stale(grant) {
                // Best effort: a failure leaves the grant readable, and the next read retries.
                if let Err(e) = super::vault::reseal(self.grants, self.vault, grant, &tokens).await {
                    tracing::warn!(grant = %grant.id, error = %e, "cannot re-seal upstream tokens under the active key");
                }
            }
            return Ok(Freshness::Fresh(tokens));
        }
        if tokens.refresh_token.is_none() {
            // Nothing to refresh with: usable until it expires, then the grant is over.
            return if tokens.expires_within(0, now) {
                self.bury(&grant.id, GrantStatus::Expired, "expired without a refresh token").await
            } else {
                Ok(Freshness::Fresh(tokens))
            };
        }
        let deadline = Instant::now() + self.policy.wait;
        let owner = random::token();
        // Grants on one connection share its tokens, so they share the lock.
        let lock = grant.connection_id().unwrap_or(&grant.id);
        loop {
            if self.locks.try_lock(lock, &owner, self.policy.lock_ttl).await? {
                let outcome = self.refresh_holding_lock(&grant.id, now).await;
                if let Err(e) = self.locks.unlock(lock, &owner).await {
                    tracing::warn!(grant = %grant.id, error = %e, "cannot release the refresh lock; it expires by itself");
                }
                return outcome;
            }
            // Another replica is refreshing: wait for its result in the grant record.
            tokio::time::sleep(POLL).await;
            match self.live(&grant.id).await? {
                Some((_, tokens)) if !tokens.expires_within(self.policy.skew, now) => {
                    return Ok(Freshness::Fresh(tokens));
                }
                None => return Ok(Freshness::Dead),
                Some(_) => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(grant = %grant.id, "gave up waiting for another replica's upstream refresh");
                return Err(unavailable());
            }
        }
    }

    /// The grant as stored now with its upstream tokens; `None` when it is gone, no longer
    /// active or unreadable.
    async fn live(&self, grant_id: &str) -> Result<Option<(GrantRecord, UpstreamTokens)>, OAuthError> {
        let Some(grant) = self.grants.grant(grant_id).await? else { return Ok(None) };
        if grant.status != GrantStatus::Active {
            return Ok(None);
        }
        Ok(self.vault.open(&grant).map(|tokens| (grant, tokens)))
    }

    /// Refreshes now, whatever the expiry says, because an MCP server's API call was refused
    /// with `rejected` (an access token). If another refresh already replaced that token, the
    /// new one is the answer.
    pub async fn refresh_rejected(
        &self,
        grant: &GrantRecord,
        rejected: &str,
        now: UnixTime,
    ) -> Result<Freshness, OAuthError> {
        let owner = random::token();
        let lock = grant.connection_id().unwrap_or(&grant.id);
        let deadline = Instant::now() + self.policy.wait;
        while !self.locks.try_lock(lock, &owner, self.policy.lock_ttl).await? {
            if Instant::now() >= deadline {
                return Err(unavailable());
            }
            tokio::time::sleep(POLL).await;
        }
        let outcome = self.refresh_locked(&grant.id, now, Some(rejected)).await;
        if let Err(e) = self.locks.unlock(lock, &owner).await {
            tracing::warn!(grant = %grant.id, error = %e, "cannot release the refresh lock; it expires by itself");
        }
        outcome
    }

    async fn refresh_holding_lock(&self, grant_id: &str, now: UnixTime) -> Result<Freshness, OAuthError> {
        self.refresh_locked(grant_id, now, None).await
    }

    async fn refresh_locked(
        &self,
        grant_id: &str,
        now: UnixTime,
        rejected: Option<&str>,
    ) -> Result<Freshness, OAuthError> {
        // Re-read under the lock: the previous holder may have refreshed a moment ago.
        let Some((grant, tokens)) = self.live(grant_id).await? else { return Ok(Freshness::Dead) };
        let current = match rejected {
            Some(rejected) => tokens.access_token != rejected,
            None => !tokens.expires_within(self.policy.skew, now),
        };
        if current {
            return Ok(Freshness::Fresh(tokens));
        }
        let Some(provider) = self.providers.get(&grant.info.provider) else {
            tracing::error!(grant = %grant_id, provider = %grant.info.provider, "the grant's provider is not configured");
            return Ok(Freshness::Dead);
        };
        match provider.refresh(&tokens, now).await {
            Ok(fresh) => {
                // The new access token and, when rotated, the new refresh token are written
                // together: they are one sealed value.
                let sealed = self.vault.seal(&grant.id, &grant.info, &fresh)?;
                self.grants.set_grant_upstream(&grant.id, &sealed).await?;
                tracing::info!(grant = %grant_id, provider = %provider.id(), "upstream token refreshed");
                self.audit.emit(self.event(EventType::ConnectionRefreshed, Outcome::Success, &grant, now));
                Ok(Freshness::Fresh(fresh))
            }
            // RFC 6749 §5.2: `invalid_grant` (or any refusal) means this grant is over.
            Err(UpstreamError::Rejected { error }) => {
                let event = self.event(EventType::ConnectionRefreshFailed, Outcome::Failure, &grant, now);
                self.audit.emit(event.reason("needs_reauth").detail("upstream_error", truncate(&error)));
                self.bury(grant_id, GrantStatus::Dead, &error).await
            }
            Err(e) => {
                tracing::warn!(grant = %grant_id, provider = %provider.id(), error = %e, "upstream refresh failed; the grant is kept");
                Err(unavailable())
            }
        }
    }

    /// Ends the connection's credential because the provider confirmed it no longer accepts it.
    pub async fn confirmed_dead(&self, grant: &GrantRecord, now: UnixTime) -> Result<Freshness, OAuthError> {
        let event = self.event(EventType::ConnectionRefreshFailed, Outcome::Failure, grant, now);
        self.audit.emit(event.reason("needs_reauth").detail("upstream_error", "token_rejected"));
        self.bury(&grant.id, GrantStatus::Dead, "the provider no longer accepts the access token").await
    }

    async fn bury(&self, grant_id: &str, status: GrantStatus, why: &str) -> Result<Freshness, OAuthError> {
        tracing::info!(grant = %grant_id, reason = %why, "upstream grant ended; the user must authorize again");
        self.grants.set_grant_status(grant_id, status).await?;
        Ok(Freshness::Dead)
    }
}
