//! Token revocation (RFC 7009).
//!
//! Access tokens are self-contained JWTs, so revoking one revokes its grant; revoking a
//! refresh token does the same. Either way every token of the grant stops working: access
//! tokens introspect inactive and the refresh token is refused. Where the provider is so
//! configured, the upstream grant is revoked too.

use crate::crypto::hash;
use crate::crypto::signing::SigningKeys;
use crate::store::{ClientRecord, GrantStatus, GrantStore, RefreshStore};
use crate::upstream::Providers;

use super::error::OAuthError;
use super::family::{self, FamilyToken};
use super::tokens::{AccessClaims, looks_like_jwt};
use super::vault::Vault;

/// What revocation needs.
#[derive(Clone, Copy)]
pub struct Revoker<'a> {
    pub grants: &'a dyn GrantStore,
    pub refresh: &'a dyn RefreshStore,
    pub signer: &'a SigningKeys,
    pub issuer: &'a str,
    pub providers: &'a Providers,
    pub vault: &'a Vault,
}

/// Revokes `token` if it belongs to `client`. Unknown tokens and other clients' tokens are
/// not an error (RFC 7009 §2.2: "invalid tokens do not cause an error response").
pub async fn revoke(ctx: Revoker<'_>, client: &ClientRecord, token: &str) -> Result<(), OAuthError> {
    let grant_id = if looks_like_jwt(token) {
        match ctx.signer.verify::<AccessClaims>(token, ctx.issuer) {
            Ok(claims) if claims.client_id == client.client_id => Some(claims.gid),
            _ => None,
        }
    } else if let Some(family_token) = family::parse(token) {
        issued_family_token(ctx, client, token, &family_token).await?
    } else {
        let digest = hash::digest(token);
        match ctx.refresh.refresh(&digest).await? {
            Some(rt) if rt.client_id == client.client_id => {
                // Revoke the grant first: if the delete then fails, the token is dead anyway.
                ctx.grants.set_grant_status(&rt.grant_id, GrantStatus::Revoked).await?;
                ctx.refresh.delete_refresh(&digest).await?;
                Some(rt.grant_id)
            }
            _ => None,
        }
    };
    let Some(grant_id) = grant_id else { return Ok(()) };
    ctx.grants.set_grant_status(&grant_id, GrantStatus::Revoked).await?;
    tracing::info!(client_id = %client.client_id, grant = %grant_id, "grant revoked");
    revoke_upstream(ctx, &grant_id).await;
    Ok(())
}

/// The grant of a family token issued to `client`: current, previous, or older but carrying
/// Tether's MAC (a made-up token naming a grant revokes nothing).
async fn issued_family_token(
    ctx: Revoker<'_>,
    client: &ClientRecord,
    token: &str,
    family_token: &FamilyToken<'_>,
) -> Result<Option<String>, OAuthError> {
    let Some(grant) = ctx.grants.grant(family_token.grant_id).await? else { return Ok(None) };
    let Some(family) = grant.family.as_ref().filter(|_| grant.info.client_id == client.client_id) else {
        return Ok(None);
    };
    let digest = hash::digest(token);
    let known = family.current == digest || family.previous.as_deref() == Some(digest.as_str());
    let issued = known || (family_token.generation <= family.generation && family_token.is_genuine(ctx.vault.keys()));
    Ok(issued.then_some(grant.id))
}

/// Best effort: the Tether grant is already revoked whatever the provider answers.
pub async fn revoke_upstream(ctx: Revoker<'_>, grant_id: &str) {
    let Ok(Some(grant)) = ctx.grants.grant(grant_id).await else { return };
    let Some(provider) = ctx.providers.get(&grant.info.provider).filter(|p| p.revokes_upstream()) else { return };
    let Some(tokens) = ctx.vault.open(&grant) else { return };
    match provider.revoke(&tokens).await {
        Ok(()) => tracing::info!(grant = %grant_id, provider = %provider.id(), "upstream grant revoked"),
        Err(e) => {
            tracing::warn!(grant = %grant_id, provider = %provider.id(), error = %e, "upstream revocation failed")
        }
    }
}
