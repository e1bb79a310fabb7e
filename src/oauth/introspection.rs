//! Token introspection for MCP servers (RFC 7662), answering with the upstream credential.
//!
//! MCP: "MCP servers MUST validate that access tokens were issued specifically for them as
//! the intended audience". Tether enforces it for them: a token is active only toward the
//! resource it is addressed to, so one MCP server can never obtain another's upstream token.

use serde::Serialize;

use crate::audit::{Auditor, Origin, Released, thumbprint};
use crate::clock::UnixTime;
use crate::crypto::signing::SigningKeys;
use crate::store::{GrantRecord, GrantStatus};
use crate::upstream::UpstreamTokens;

use super::error::OAuthError;
use super::refresh::{Freshness, Refresher};
use super::registry::Registry;
use super::registry::Resource;
use super::tokens::{AccessClaims, Actor, VerifiedTokens, looks_like_jwt};

/// Tokens dated further in the future than this are not Tether's (clock skew between replicas).
const MAX_FUTURE_IAT: i64 = 60;

/// Seconds a token stays active past its `exp`: the replica that signed it and the one checking
/// it read different clocks. Small, because revocation does not depend on it (the grant record is
/// read on every call) but a stolen token's life does.
pub const EXP_LEEWAY_SECS: i64 = 5;

/// The upstream credential handed to the resource.
#[derive(Debug, Serialize)]
pub struct UpstreamCredential {
    pub provider: String,
    pub access_token: String,
    pub token_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What an API caller needs beside the token (Salesforce `instance_url`, the API base and
    /// headers the provider wants); absent for providers that need nothing.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl UpstreamCredential {
    /// What the resource gets of the grant's upstream tokens: never the refresh token.
    pub fn new(provider: String, tokens: crate::upstream::UpstreamTokens) -> Self {
        Self {
            provider,
            access_token: tokens.access_token,
            token_type: tokens.token_type,
            expires_at: tokens.expires_at,
            scope: tokens.scope,
            extra: tokens.extra,
        }
    }
}

/// An active token's answer (RFC 7662 §2.2 members plus `upstream`).
#[derive(Debug, Serialize)]
pub struct ActiveToken {
    pub active: bool,
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub jti: String,
    pub token_type: &'static str,
    /// RFC 8693 §4.1: the MCP server that exchanged its token for this one (chains).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Absent when the connection needs the person again ("connect first").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamCredential>,
    /// `interaction_required` when there is no usable upstream credential, with the link that
    /// lets the person connect the provider again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction_uri: Option<String>,
}

impl ActiveToken {
    /// The answer for `claims`: with `upstream`, or "connect first" with `interaction_uri`.
    fn new(claims: AccessClaims, upstream: Result<UpstreamCredential, String>) -> Self {
        let (upstream, upstream_error, interaction_uri) = match upstream {
            Ok(credential) => (Some(credential), None, None),
            Err(uri) => (None, Some(super::reconnect::INTERACTION_REQUIRED), Some(uri)),
        };
        Self {
            active: true,
            iss: claims.iss,
            sub: claims.sub,
            aud: claims.aud,
            client_id: claims.client_id,
            scope: claims.scope,
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
            token_type: "Bearer",
            act: claims.act,
            upstream,
            upstream_error,
            interaction_uri,
        }
    }
}

/// Whether `grant` waits for its person: its connection needs them again. Grants made before
/// connections existed have no connection to restore and simply end.
pub fn needs_connection(grant: &GrantRecord) -> bool {
    grant.connection_id().is_some() && matches!(grant.status, GrantStatus::Dead | GrantStatus::Expired)
}

/// The outcome: anything but a live token addressed to the caller is `{"active": false}`.
#[derive(Debug)]
pub enum Introspection {
    Active(Box<ActiveToken>),
    /// Why, for the log and metrics (never for the caller).
    Inactive(Inactive),
}

/// Why a token is inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    NotAToken,
    BadSignature,
    Expired,
    FutureIat,
    WrongAudience,
    GrantGone,
    GrantEnded,
    GrantMismatch,
    Unreadable,
    UpstreamEnded,
}

impl Inactive {
    /// A fixed code (log field, metrics label).
    pub fn code(self) -> &'static str {
        match self {
            Inactive::NotAToken => "not_a_token",
            Inactive::BadSignature => "bad_signature",
            Inactive::Expired => "expired",
            Inactive::FutureIat => "future_iat",
            Inactive::WrongAudience => "wrong_audience",
            Inactive::GrantGone => "grant_gone",
            Inactive::GrantEnded => "grant_ended",
            Inactive::GrantMismatch => "grant_mismatch",
            Inactive::Unreadable => "unreadable",
            Inactive::UpstreamEnded => "upstream_ended",
        }
    }
}

/// What the audit trail says of a release of `grant`'s upstream credential to `resource`.
pub fn released(grant: &GrantRecord, resource: &str, access_token: &str) -> Released {
    Released {
        grant_id: grant.id.clone(),
        resource: resource.to_owned(),
        client_id: grant.info.client_id.clone(),
        user: grant.info.user(),
        provider: grant.info.provider.clone(),
        thumbprint: thumbprint(access_token),
    }
}

fn inactive(reason: Inactive) -> Introspection {
    tracing::debug!(reason = reason.code(), "token inactive");
    Introspection::Inactive(reason)
}

/// What introspection needs besides the request.
#[derive(Clone, Copy)]
pub struct Introspector<'a> {
    pub signer: &'a SigningKeys,
    pub verified: &'a VerifiedTokens,
    pub issuer: &'a str,
    pub refresher: Refresher<'a>,
    /// Set when background refresh is on: grants used are recorded for it, for this long.
    pub activity: Option<super::background::Activity<'a>>,
    pub audit: &'a Auditor,
    /// For chained tokens: which resource may exchange for which.
    pub registry: &'a Registry,
}

/// The longest chain of MCP servers a token may have passed through.
pub const MAX_CHAIN: usize = 4;

/// Whether the chain in `act` may reach `caller` from the grant's resource: each actor (by its
/// URI) still lists the next in `may_exchange_for`, and the first is the grant's own resource.
/// Checked on every use, so taking a permission out of the configuration ends the chain's tokens.
fn chain_allowed(registry: &Registry, act: &Actor, grant_resource: &str, caller: &str) -> bool {
    let mut next = caller;
    for (depth, actor) in act.chain().enumerate() {
        let Some(resource) = registry.resource_by_uri(&actor.sub) else { return false };
        if depth >= MAX_CHAIN || !resource.may_exchange_for.iter().any(|id| id == next) {
            return false;
        }
        next = &resource.id;
    }
    next == grant_resource
}

/// A token that checks out for `caller`: its claims and its grant, or why not. Nothing is
/// refreshed or recorded.
pub async fn subject(
    ctx: Introspector<'_>,
    caller: &Resource,
    token: &str,
    now: UnixTime,
) -> Result<Result<(AccessClaims, GrantRecord), Inactive>, OAuthError> {
    let Introspector { signer, verified, issuer, refresher, registry, .. } = ctx;
    if !looks_like_jwt(token) {
        return Ok(Err(Inactive::NotAToken));
    }
    let Some(claims) = verified.verify(signer, token, issuer, now) else {
        return Ok(Err(Inactive::BadSignature));
    };
    let claims = AccessClaims::clone(&claims);
    if claims.exp + EXP_LEEWAY_SECS <= now {
        return Ok(Err(Inactive::Expired));
    }
    if claims.iat > now + MAX_FUTURE_IAT {
        return Ok(Err(Inactive::FutureIat));
    }
    if claims.aud != caller.uri {
        return Ok(Err(Inactive::WrongAudience));
    }
    let Some(grant) = refresher.grants.grant(&claims.gid).await? else {
        return Ok(Err(Inactive::GrantGone));
    };
    if grant.status != GrantStatus::Active && !needs_connection(&grant) {
        return Ok(Err(Inactive::GrantEnded));
    }
    let served = match &claims.act {
        None => grant.info.resource == caller.id,
        Some(act) => chain_allowed(registry, act, &grant.info.resource, &caller.id),
    };
    if grant.info.client_id != claims.client_id || grant.info.subject != claims.sub || !served {
        return Ok(Err(Inactive::GrantMismatch));
    }
    Ok(Ok((claims, grant)))
}

pub async fn introspect(
    ctx: Introspector<'_>,
    caller: &Resource,
    token: &str,
    origin: &dyn Fn() -> Origin,
    now: UnixTime,
) -> Result<Introspection, OAuthError> {
    introspect_for(ctx, caller, token, origin, now, &|_, _| Ok(())).await
}

/// `introspect`, with the caller's own conditions on the credential (token exchange's target
/// and scope), checked before it counts as released: a refusal is no release in the trail.
pub async fn introspect_for(
    ctx: Introspector<'_>,
    caller: &Resource,
    token: &str,
    origin: &dyn Fn() -> Origin,
    now: UnixTime,
    accept: &(dyn Fn(&str, &UpstreamTokens) -> Result<(), OAuthError> + Sync),
) -> Result<Introspection, OAuthError> {
    let (refresher, activity, audit) = (ctx.refresher, ctx.activity, ctx.audit);
    let vault = refresher.vault;
    let (claims, grant) = match subject(ctx, caller, token, now).await? {
        Ok(found) => found,
        Err(reason) => return Ok(inactive(reason)),
    };
    let reconnect = |grant: &GrantRecord| super::reconnect::uri(vault.keys(), ctx.issuer, &grant.id, now);
    if needs_connection(&grant) {
        return Ok(Introspection::Active(Box::new(ActiveToken::new(claims, Err(reconnect(&grant))))));
    }
    let Some(tokens) = vault.open(&grant) else {
        return Ok(inactive(Inactive::Unreadable));
    };
    // MCP 2025-03-26, third-party authorization: validate the upstream token's status before
    // honouring the MCP token; refresh it when it is (about to be) expired.
    let tokens = match refresher.ensure_fresh(&grant, tokens, now).await? {
        Freshness::Fresh(tokens) => tokens,
        Freshness::Dead if grant.connection_id().is_some() => {
            return Ok(Introspection::Active(Box::new(ActiveToken::new(claims, Err(reconnect(&grant))))));
        }
        Freshness::Dead => return Ok(inactive(Inactive::UpstreamEnded)),
    };
    accept(&grant.info.provider, &tokens)?;
    if let Some(activity) = activity {
        activity.used(&grant.id, now).await;
    }
    audit
        .credential_released(&grant.id, &caller.id, origin, now, || released(&grant, &caller.id, &tokens.access_token));
    let upstream = UpstreamCredential::new(grant.info.provider, tokens);
    Ok(Introspection::Active(Box::new(ActiveToken::new(claims, Ok(upstream)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::registry::Resource;

    fn resource(id: &str, may: &[&str]) -> Resource {
        Resource {
            id: id.into(),
            uri: format!("https://{id}.example/mcp"),
            name: id.into(),
            provider: "dev".into(),
            scopes: vec![],
            secret_digest: String::new(),
            webhook: None,
            may_exchange_for: may.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn act(ids: &[&str]) -> Actor {
        // Current actor first.
        ids.iter()
            .rev()
            .fold(None, |inner, id| Some(Actor { sub: format!("https://{id}.example/mcp"), act: inner.map(Box::new) }))
            .unwrap()
    }

    #[test]
    fn a_chain_is_good_only_hop_by_hop_from_the_grants_own_resource() {
        let registry = Registry::new(
            vec![resource("a", &["b"]), resource("b", &["c"]), resource("c", &[]), resource("d", &["c"])],
            vec![],
        );
        assert!(chain_allowed(&registry, &act(&["a"]), "a", "b"));
        assert!(chain_allowed(&registry, &act(&["b", "a"]), "a", "c"), "a -> b -> c");
        assert!(!chain_allowed(&registry, &act(&["a"]), "a", "c"), "a may not reach c directly");
        assert!(!chain_allowed(&registry, &act(&["d"]), "a", "c"), "d's permission is not the grant's");
        assert!(!chain_allowed(&registry, &act(&["b"]), "a", "c"), "the chain must start at the grant's resource");
        let unknown = Actor { sub: "https://nowhere.example/mcp".into(), act: None };
        assert!(!chain_allowed(&registry, &unknown, "a", "b"));
    }
}
