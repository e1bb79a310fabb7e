//! Ending grants: one path for every trigger.
//!
//! A client's RFC 7009 revocation, an operator, the user, a deleted client, refresh token
//! reuse, a replayed code and a replaced or disconnected session all end grants through
//! [`end`]: the grant turns `revoked` with a tombstone (when, by whom, why), its sealed
//! upstream tokens are deleted, every access and refresh token of it stops working at once
//! on every replica (both are checked against the grant record on each use), the upstream
//! grant is revoked where the provider is so configured, one audit event per grant says so,
//! and the caller gets a report of what happened.

use serde::Serialize;

use crate::audit::{Actor, ActorKind, Auditor, Event, EventType, Origin, Outcome};
use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::crypto::signing::SigningKeys;
use crate::store::{ClientRecord, GrantRecord, GrantStatus, GrantStore, RefreshStore, Revoked, Tombstone};
use crate::upstream::Providers;

use super::error::OAuthError;
use super::family::{self, FamilyToken};
use super::tokens::{AccessClaims, looks_like_jwt};
use super::vault::Vault;

/// What ended a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The client revoked one of its tokens (RFC 7009).
    ClientRevocation { client_id: String },
    /// An operator, through the admin API (the admin token's id).
    Admin { token: String },
    /// The user themselves, on the account page (their user id).
    User { user: String },
    /// The client was deleted (RFC 7592 or by an operator).
    ClientDeleted { client_id: String },
    /// A rotated refresh token came back after the grace window (RFC 9700 §4.14.2).
    RefreshReuse,
    /// An authorization code was presented twice (OAuth 2.1 §4.1.3).
    CodeReplay,
    /// The MCP server connected its session to another account.
    SessionReplaced { resource: String },
    /// The MCP server disconnected its session.
    SessionDisconnected { resource: String },
    /// The user connected another upstream account to the same provider: the grants made on
    /// the old one end rather than silently act as the new one.
    ConnectionReplaced,
    /// The MCP server was removed from the configuration.
    ResourceRemoved { resource: String },
}

impl Trigger {
    /// The tombstone's and the event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClientRevocation { .. } => "client_revocation",
            Self::Admin { .. } => "admin",
            Self::User { .. } => "user",
            Self::ClientDeleted { .. } => "client_deleted",
            Self::RefreshReuse => "refresh_reuse",
            Self::CodeReplay => "code_replay",
            Self::SessionReplaced { .. } => "session_replaced",
            Self::SessionDisconnected { .. } => "session_disconnected",
            Self::ConnectionReplaced => "connection_replaced",
            Self::ResourceRemoved { .. } => "resource_removed",
        }
    }

    fn actor(&self) -> Actor {
        match self {
            Self::ClientRevocation { client_id } | Self::ClientDeleted { client_id } => {
                Actor::new(ActorKind::Client, client_id)
            }
            Self::Admin { token } => Actor::new(ActorKind::Admin, token),
            Self::User { user } => Actor::new(ActorKind::User, user),
            Self::ConnectionReplaced => Actor { kind: ActorKind::User, id: None },
            Self::RefreshReuse | Self::CodeReplay | Self::ResourceRemoved { .. } => Actor::system(),
            Self::SessionReplaced { resource } | Self::SessionDisconnected { resource } => {
                Actor::new(ActorKind::Resource, resource)
            }
        }
    }

    /// Who, for the tombstone: `admin:<token id>`, `client:<id>`, `resource:<id>`, `user`,
    /// `system`.
    fn by(&self) -> String {
        let actor = self.actor();
        let kind =
            serde_json::to_value(actor.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        match actor.id {
            Some(id) => format!("{kind}:{id}"),
            None => kind,
        }
    }
}

/// What happened upstream, over the grants a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamResult {
    /// Every upstream grant was revoked at its provider.
    Revoked,
    /// A provider refused or could not be reached (the Tether grant is revoked regardless).
    Failed,
    /// The provider has no revocation, or is not configured to revoke upstream.
    Unsupported,
    /// Upstream revocation was not asked for, or nothing was left to revoke.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamReport {
    pub result: UpstreamResult,
}

/// What ending grants did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The grants that are now revoked (including ones that already were).
    pub revoked: Vec<String>,
    pub upstream: UpstreamReport,
}

/// What revocation needs.
#[derive(Clone, Copy)]
pub struct Revoker<'a> {
    pub grants: &'a dyn GrantStore,
    pub refresh: &'a dyn RefreshStore,
    pub signer: &'a SigningKeys,
    pub issuer: &'a str,
    pub providers: &'a Providers,
    pub vault: &'a Vault,
    pub audit: &'a Auditor,
    /// How long a revoked grant's tombstone is kept.
    pub tombstone_ttl: std::time::Duration,
}

impl std::fmt::Debug for Revoker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revoker").finish_non_exhaustive()
    }
}

/// Ends the grants `ids` for `trigger`; `upstream`: also revoke at the provider where it is
/// configured to. Grants that do not exist are left out of the report; ones already revoked
/// are in it (the call is idempotent) and keep their first tombstone.
pub async fn end(
    ctx: Revoker<'_>,
    ids: &[String],
    trigger: &Trigger,
    upstream: bool,
    origin: &Origin,
    now: UnixTime,
) -> Result<Report, OAuthError> {
    let mut report = Report { revoked: Vec::new(), upstream: UpstreamReport { result: UpstreamResult::Skipped } };
    let tombstone = Tombstone { at: now, by: trigger.by(), reason: trigger.reason().to_owned() };
    for id in ids {
        let Some(grant) = ctx.grants.grant(id).await? else { continue };
        // The tokens are read before they are deleted, to revoke them upstream.
        let tokens = (upstream && grant.status != GrantStatus::Revoked).then(|| ctx.vault.open(&grant)).flatten();
        let revoked = ctx.grants.revoke_grant(id, &tombstone, ctx.tombstone_ttl).await?;
        let result = match (revoked, tokens) {
            (Revoked::Missing, _) => continue,
            // Other live grants of the user use the same upstream tokens: revoking them at
            // the provider (GitHub deletes the whole authorization) would end those too.
            (Revoked::Shared, _) => UpstreamResult::Skipped,
            (Revoked::Last, Some(tokens)) => revoke_upstream(ctx, &grant, &tokens).await,
            (Revoked::Last, None) if upstream && grant.status != GrantStatus::Revoked => UpstreamResult::Unsupported,
            (Revoked::Last, None) => UpstreamResult::Skipped,
        };
        report.upstream.result = combine(report.upstream.result, result);
        if grant.status != GrantStatus::Revoked {
            tracing::info!(grant = %id, reason = trigger.reason(), "grant revoked");
            ctx.audit.emit(
                Event::new(EventType::GrantRevoked, trigger.actor(), Outcome::Success, now)
                    .reason(trigger.reason())
                    .grant(id)
                    .user(grant.info.user())
                    .client(&grant.info.client_id)
                    .resource(&grant.info.resource)
                    .provider(&grant.info.provider)
                    .detail("upstream", serde_json::to_value(result).unwrap_or_default())
                    .origin(origin),
            );
        }
        report.revoked.push(id.clone());
    }
    Ok(report)
}

/// The report's upstream result over several grants: a failure outweighs a success, which
/// outweighs "unsupported", which outweighs "skipped".
fn combine(so_far: UpstreamResult, next: UpstreamResult) -> UpstreamResult {
    let rank = |r: UpstreamResult| match r {
        UpstreamResult::Skipped => 0,
        UpstreamResult::Unsupported => 1,
        UpstreamResult::Revoked => 2,
        UpstreamResult::Failed => 3,
    };
    if rank(next) > rank(so_far) { next } else { so_far }
}

/// Best effort: the Tether grant is already revoked whatever the provider answers.
async fn revoke_upstream(
    ctx: Revoker<'_>,
    grant: &GrantRecord,
    tokens: &crate::upstream::UpstreamTokens,
) -> UpstreamResult {
    let Some(provider) = ctx.providers.get(&grant.info.provider).filter(|p| p.revokes_upstream()) else {
        return UpstreamResult::Unsupported;
    };
    match provider.revoke(tokens).await {
        Ok(()) => {
            tracing::info!(grant = %grant.id, provider = %provider.id(), "upstream grant revoked");
            UpstreamResult::Revoked
        }
        Err(e) => {
            tracing::warn!(grant = %grant.id, provider = %provider.id(), error = %e, "upstream revocation failed");
            UpstreamResult::Failed
        }
    }
}

/// `POST /revoke` (RFC 7009): revokes `token` if it belongs to `client`, and with it its
/// whole grant. Unknown tokens and other clients' tokens are not an error (RFC 7009 §2.2:
/// "invalid tokens do not cause an error response").
pub async fn revoke(
    ctx: Revoker<'_>,
    client: &ClientRecord,
    token: &str,
    origin: &Origin,
    now: UnixTime,
) -> Result<(), OAuthError> {
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
                ctx.refresh.delete_refresh(&digest).await?;
                Some(rt.grant_id)
            }
            _ => None,
        }
    };
    let Some(grant_id) = grant_id else { return Ok(()) };
    let trigger = Trigger::ClientRevocation { client_id: client.client_id.clone() };
    end(ctx, &[grant_id], &trigger, true, origin, now).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_upstream_outweighs_every_other_result() {
        use UpstreamResult::*;
        assert_eq!(combine(Skipped, Unsupported), Unsupported);
        assert_eq!(combine(Unsupported, Revoked), Revoked);
        assert_eq!(combine(Revoked, Skipped), Revoked);
        assert_eq!(combine(Revoked, Failed), Failed);
        assert_eq!(combine(Failed, Revoked), Failed);
    }

    #[test]
    fn each_trigger_names_who_ended_the_grant() {
        assert_eq!(Trigger::Admin { token: "ops".into() }.by(), "admin:ops");
        assert_eq!(Trigger::ClientRevocation { client_id: "c1".into() }.by(), "client:c1");
        assert_eq!(Trigger::RefreshReuse.by(), "system");
        assert_eq!(Trigger::User { user: "dev:42".into() }.by(), "user:dev:42");
        assert_eq!(Trigger::SessionDisconnected { resource: "files".into() }.by(), "resource:files");
    }
}
