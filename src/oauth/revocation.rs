//! Token revocation (RFC 7009).
//!
//! Access tokens are self-contained JWTs, so revoking one revokes its grant; revoking a
//! refresh token does the same. Either way every token of the grant stops working: access
//! tokens introspect inactive and the refresh token is refused.

use crate::crypto::hash;
use crate::crypto::signing::SigningKeys;
use crate::store::{ClientRecord, GrantStatus, GrantStore, RefreshStore};

use super::error::OAuthError;
use super::tokens::{AccessClaims, looks_like_jwt};

/// Revokes `token` if it belongs to `client`. Unknown tokens and other clients' tokens are
/// not an error (RFC 7009 §2.2: "invalid tokens do not cause an error response").
pub async fn revoke(
    grants: &dyn GrantStore,
    refresh: &dyn RefreshStore,
    signer: &SigningKeys,
    issuer: &str,
    client: &ClientRecord,
    token: &str,
) -> Result<(), OAuthError> {
    if looks_like_jwt(token) {
        if let Ok(claims) = signer.verify::<AccessClaims>(token, issuer)
            && claims.client_id == client.client_id
        {
            grants.set_grant_status(&claims.gid, GrantStatus::Revoked).await?;
            tracing::info!(client_id = %client.client_id, grant = %claims.gid, "grant revoked by access token");
        }
        return Ok(());
    }
    let digest = hash::digest(token);
    if let Some(rt) = refresh.refresh(&digest).await?
        && rt.client_id == client.client_id
    {
        // Revoke the grant first: if the delete then fails, the token is dead anyway.
        grants.set_grant_status(&rt.grant_id, GrantStatus::Revoked).await?;
        refresh.delete_refresh(&digest).await?;
        tracing::info!(client_id = %client.client_id, grant = %rt.grant_id, "grant revoked by refresh token");
    }
    Ok(())
}
