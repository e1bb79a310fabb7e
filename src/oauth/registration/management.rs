//! Client registration management (RFC 7592): read and delete, with the registration access
//! token issued at registration. Updates (PUT) are not offered: clients register anew.

use crate::crypto::hash;
use crate::store::{ClientRecord, ClientSource, ClientStore};

use super::super::error::{ErrorCode, OAuthError};
use super::{ClientMetadata, RegistrationResponse, management_uri};

/// RFC 7592 §2: a bad token, or a client that does not exist, is a 401 `invalid_token`
/// (RFC 6750), so the answer does not tell which.
fn invalid_token() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, "the registration access token is invalid for this client")
}

async fn authorized(
    clients: &dyn ClientStore,
    client_id: &str,
    token: Option<&str>,
) -> Result<ClientRecord, OAuthError> {
    let token = token.ok_or_else(invalid_token)?;
    let client = clients.client(client_id).await?.ok_or_else(invalid_token)?;
    match (&client.source, &client.registration_token_digest) {
        (ClientSource::Dynamic, Some(expected)) if hash::matches_digest(token, expected) => Ok(client),
        _ => Err(invalid_token()),
    }
}

/// RFC 7592 §2.1: the client's current registration. The secret is not repeated: Tether only
/// keeps its digest.
pub async fn read(
    clients: &dyn ClientStore,
    issuer: &str,
    client_id: &str,
    token: Option<&str>,
) -> Result<RegistrationResponse, OAuthError> {
    let client = authorized(clients, client_id, token).await?;
    Ok(RegistrationResponse {
        client_id: client.client_id.clone(),
        client_secret: None,
        client_id_issued_at: client.issued_at,
        client_secret_expires_at: None,
        registration_client_uri: management_uri(issuer, &client.client_id),
        registration_access_token: None,
        metadata: ClientMetadata::from(&client),
    })
}

/// RFC 7592 §2.3: deletes the registration (the caller then revokes its grants, which ends
/// every token issued to it).
pub async fn deregister(clients: &dyn ClientStore, client_id: &str, token: Option<&str>) -> Result<(), OAuthError> {
    authorized(clients, client_id, token).await?;
    clients.delete_client(client_id).await?;
    tracing::info!(%client_id, "client deregistered");
    Ok(())
}
