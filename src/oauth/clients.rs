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
