//! Finding a client by id, wherever it is registered: in the configuration, as a Client ID
//! Metadata Document (an https `client_id`), or dynamically (the store).

use crate::clock::UnixTime;
use crate::store::{ClientRecord, ClientStore, StoreError};

use super::documents::{DocumentClients, DocumentError, is_document_id};
use super::error::{ErrorCode, OAuthError};
use super::registry::Registry;

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Document(#[from] DocumentError),
}

impl LookupError {
    /// For the token, revocation and registration endpoints: a client whose document cannot be
    /// used is not authenticated, unless the failure is the document host's and transient.
    pub fn into_oauth(self) -> OAuthError {
        match self {
            Self::Store(e) => OAuthError::store(e),
            Self::Document(DocumentError::Fetch(e)) if e.is_transient() => {
                tracing::warn!(error = %e, "client metadata document unavailable");
                OAuthError::new(ErrorCode::TemporarilyUnavailable, "the client's metadata document is unavailable")
            }
            Self::Document(e) => OAuthError::invalid_client(e.to_string()),
        }
    }
}

/// The places clients are registered.
#[derive(Clone, Copy)]
pub struct Clients<'a> {
    pub registry: &'a Registry,
    pub store: &'a dyn ClientStore,
    /// `None` when Client ID Metadata Documents are disabled.
    pub documents: Option<&'a DocumentClients>,
}

impl std::fmt::Debug for Clients<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("documents", &self.documents.is_some()).finish_non_exhaustive()
    }
}

impl Clients<'_> {
    pub async fn find(&self, client_id: &str, now: UnixTime) -> Result<Option<ClientRecord>, LookupError> {
        if let Some(client) = self.registry.static_client(client_id) {
            return Ok(Some(client.clone()));
        }
        if is_document_id(client_id) {
            return match self.documents {
                Some(documents) => Ok(Some(documents.client(client_id, now).await?.as_ref().clone())),
                None => Ok(None),
            };
        }
        Ok(self.store.client(client_id).await?)
    }
}

/// Dynamic clients this process recently kept alive, so a busy client's token requests do
/// not each rewrite its lifetime (two store writes per token request otherwise).
///
/// A client is kept for `registration.client_ttl_secs` after it last obtained tokens; renewing
/// that at most once per hundredth of it (and at least hourly) keeps every client used within
/// its lifetime alive, to within that interval, at a cost of one renewal per client, process
/// and interval. Bounded: forgetting a client only means renewing it again.
pub struct ClientTouches {
    cache: quick_cache::sync::Cache<String, UnixTime>,
}

impl std::fmt::Debug for ClientTouches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTouches").field("entries", &self.cache.len()).finish()
    }
}

impl Default for ClientTouches {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl ClientTouches {
    pub fn new(capacity: usize) -> Self {
        Self { cache: quick_cache::sync::Cache::new(capacity.max(1)) }
    }

    /// Keeps a dynamic client registered for `idle` from `now`, unless this process did so
    /// less than an interval ago.
    pub async fn keep(
        &self,
        store: &dyn ClientStore,
        client_id: &str,
        idle: std::time::Duration,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        if self.due(client_id, idle, now) && store.touch_client(client_id, idle).await? {
            self.renewed(client_id, now);
        }
        Ok(())
    }

    /// Whether `client_id`'s lifetime of `idle` is due for renewal at `now`.
    fn due(&self, client_id: &str, idle: std::time::Duration, now: UnixTime) -> bool {
        let interval = Self::interval(idle);
        self.cache.get(client_id).is_none_or(|at| now.saturating_sub(at) >= interval || at > now)
    }

    /// Records that `client_id`'s lifetime was renewed at `now`.
    fn renewed(&self, client_id: &str, now: UnixTime) {
        self.cache.insert(client_id.to_owned(), now);
    }

    /// Seconds between renewals of one client: a hundredth of its lifetime, at most an hour.
    fn interval(idle: std::time::Duration) -> UnixTime {
        let seconds = UnixTime::try_from(idle.as_secs() / 100).unwrap_or(UnixTime::MAX);
        seconds.min(3600)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ClientTouches;

    const IDLE: Duration = Duration::from_secs(90 * 86_400);

    #[test]
    fn a_client_is_renewed_once_per_interval() {
        let touches = ClientTouches::new(10);
        assert!(touches.due("a", IDLE, 1_000), "a client never renewed here is due");
        touches.renewed("a", 1_000);
        assert!(!touches.due("a", IDLE, 1_000));
        assert!(!touches.due("a", IDLE, 1_000 + 3_599), "renewed within the hour");
        assert!(touches.due("a", IDLE, 1_000 + 3_600), "an hour later it is due again");
        assert!(touches.due("b", IDLE, 1_000), "each client has its own time");
    }

    #[test]
    fn a_short_lifetime_is_renewed_at_a_hundredth_of_it() {
        let touches = ClientTouches::new(10);
        touches.renewed("a", 1_000);
        assert!(!touches.due("a", Duration::from_secs(1_000), 1_009));
        assert!(touches.due("a", Duration::from_secs(1_000), 1_010));
        // Under 100 s: every request renews.
        assert!(touches.due("a", Duration::from_secs(99), 1_000));
    }

    #[test]
    fn a_clock_that_went_back_renews() {
        let touches = ClientTouches::new(10);
        touches.renewed("a", 1_000);
        assert!(touches.due("a", IDLE, 900));
    }
}
