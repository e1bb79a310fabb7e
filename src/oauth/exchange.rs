//! RFC 8693 token exchange for MCP servers: the standard way to what introspection's `upstream`
//! member hands over. An MCP server, authenticated with its resource credentials, presents a
//! Tether access token addressed to it (`subject_token`) and gets the upstream access token of
//! the grant behind it, refreshed exactly as introspection refreshes it, never the upstream
//! refresh token.
//!
//! MCP server chains: naming another MCP server Tether serves (`audience` = its resource id, or
//! `resource` = its URI) instead, a server the configuration allows (`may_exchange_for`) gets a
//! short-lived Tether token addressed to that server, for the same user and grant, scopes
//! narrowed to what both offer, with an `act` claim naming the caller (RFC 8693 §4.1).

use serde::Serialize;

use crate::audit::Origin;
use crate::clock::UnixTime;
use crate::upstream::UpstreamTokens;

use super::error::{ErrorCode, OAuthError};
use super::introspection::{Introspection, Introspector, MAX_CHAIN, introspect_for, subject};
use super::registry::Resource;
use super::tokens::{Actor, Minter};

/// A chained token lives at most this long (and never past the token it came from).
pub const CHAINED_TTL_SECS: i64 = 300;

/// `grant_type` of RFC 8693 §2.1.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token type URIs Tether takes and issues.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A token exchange request (RFC 8693 §2.1), as sent.
#[derive(Debug, Default)]
pub struct ExchangeRequest {
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    /// The provider (its id in Tether's configuration), if the caller names it.
    pub audience: Option<String>,
    /// The provider's API (its `api_base_url`), if the caller names it.
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// A chained Tether token (RFC 8693 §2.2.1): no refresh token, ever.
#[derive(Debug, Serialize)]
pub struct Chained {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// What an exchange gives: the upstream credential, or a token for the next MCP server.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Upstream(Exchanged),
    Chained(Chained),
}

/// The answer (RFC 8693 §2.2.1), plus the provider and the values its API needs.
#[derive(Debug, Serialize)]
pub struct Exchanged {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Which provider the token is for (the configuration's id).
    pub provider: String,
    /// As introspection's `upstream.extra`: the API base, headers, `instance_url`, ...
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

fn invalid_request(why: &'static str) -> OAuthError {
    OAuthError::invalid_request(why)
}

/// Checks what can be checked before the subject token is looked at.
fn check_shape(request: &ExchangeRequest) -> Result<&str, OAuthError> {
    let token = request.subject_token.as_deref().filter(|t| !t.is_empty());
    let token = token.ok_or_else(|| invalid_request("subject_token is required"))?;
    match request.subject_token_type.as_deref() {
        Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(invalid_request(
                "subject_token_type must be urn:ietf:params:oauth:token-type:access_token (a Tether access token)",
            ));
        }
        None => return Err(invalid_request("subject_token_type is required")),
    }
    match (&request.actor_token, &request.actor_token_type) {
        (None, None) => {}
        (None, Some(_)) => return Err(invalid_request("actor_token_type is sent only with actor_token")),
        (Some(_), _) => return Err(invalid_request("actor tokens are not accepted")),
    }
    if request.requested_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(invalid_request("requested_token_type can only be urn:ietf:params:oauth:token-type:access_token"));
    }
    Ok(token)
}

/// The MCP server the request names, if it names one of Tether's rather than the provider.
fn chain_target<'r>(ctx: &Introspector<'r>, request: &ExchangeRequest) -> Result<Option<&'r Resource>, OAuthError> {
    let by_id = request.audience.as_deref().and_then(|a| ctx.registry.resource(a));
    let by_uri = request.resource.as_deref().and_then(|uri| ctx.registry.resource_for(Some(uri)).ok());
    let Some(target) = by_id.or(by_uri) else { return Ok(None) };
    // Whatever the request names must then be that one server.
    let names_it = |named: Option<&Resource>| named.is_some_and(|r| r.id == target.id);
    if (request.audience.is_some() && !names_it(by_id)) || (request.resource.is_some() && !names_it(by_uri)) {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "audience and resource name different targets"));
    }
    Ok(Some(target))
}

/// Exchanges `request.subject_token`: for the upstream credential of its grant, or for a token
/// addressed to the MCP server the request names.
pub async fn exchange(
    ctx: Introspector<'_>,
    minter: Minter<'_>,
    caller: &Resource,
    request: &ExchangeRequest,
    origin: &dyn Fn() -> Origin,
    now: UnixTime,
) -> Result<Answer, OAuthError> {
    let token = check_shape(request)?;
    if let Some(target) = chain_target(&ctx, request)? {
        return chain(ctx, minter, caller, target, token, request.scope.as_deref(), now).await.map(Answer::Chained);
    }
    upstream(ctx, caller, token, request, origin, now).await.map(Answer::Upstream)
}

/// A token for `target`, for the same user and grant, acting as `caller`.
async fn chain(
    ctx: Introspector<'_>,
    minter: Minter<'_>,
    caller: &Resource,
    target: &Resource,
    token: &str,
    requested: Option<&str>,
    now: UnixTime,
) -> Result<Chained, OAuthError> {
    if target.id == caller.id || !caller.may_exchange_for.contains(&target.id) {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "this MCP server may not exchange for that one"));
    }
    let (claims, grant) = match subject(ctx, caller, token, now).await? {
        Ok(found) => found,
        Err(_) => {
            return Err(invalid_request("subject_token is not an active Tether access token for this resource"));
        }
    };
    let depth = claims.act.as_ref().map_or(0, |a| a.chain().count());
    if depth + 1 > MAX_CHAIN {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "the chain of MCP servers is too long"));
    }
    // Narrowed, never widened: what the token had and the next server offers, then what the
    // caller asks for within that.
    let offered: Vec<&str> = target.scopes.iter().map(|s| s.name.as_str()).collect();
    let mut scope: Vec<String> =
        claims.scope.split(' ').filter(|s| !s.is_empty() && offered.contains(s)).map(str::to_owned).collect();
    if let Some(requested) = requested {
        let asked: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
        if asked.iter().any(|s| !scope.iter().any(|have| have == s)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "a chained token has at most the scopes of the token it comes from that the next server offers",
            ));
        }
        scope.retain(|s| asked.contains(&s.as_str()));
    }
    let act = Actor { sub: caller.uri.clone(), act: claims.act.clone().map(Box::new) };
    let ttl = CHAINED_TTL_SECS.min(claims.exp.saturating_sub(now)).max(1);
    let (access_token, expires_in) =
        minter.token(&grant.id, &grant.info, &target.uri, &scope, Some(act), ttl.unsigned_abs(), now)?;
    ctx.audit.emit(
        crate::audit::Event::new(
            crate::audit::EventType::TokenIssued,
            crate::audit::Actor::new(crate::audit::ActorKind::Resource, &caller.id),
            crate::audit::Outcome::Success,
            now,
        )
        .grant(&grant.id)
        .user(grant.info.user())
        .client(&grant.info.client_id)
        .resource(&target.id)
        .provider(&grant.info.provider)
        .scope(&scope)
        .detail("grant_type", GRANT_TYPE)
        .detail("actor", caller.id.as_str())
        .detail("chain_depth", depth + 1),
    );
    Ok(Chained {
        access_token,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: "Bearer",
        expires_in: i64::try_from(expires_in).unwrap_or(CHAINED_TTL_SECS),
        scope: scope.join(" "),
    })
}

/// The upstream credential behind `token`.
async fn upstream(
    ctx: Introspector<'_>,
    caller: &Resource,
    token: &str,
    request: &ExchangeRequest,
    origin: &dyn Fn() -> Origin,
    now: UnixTime,
) -> Result<Exchanged, OAuthError> {
    // The same checks, refresh and audit event as introspection: a token is good only for the
    // resource it is addressed to, and its upstream token is fresh.
    let accept = |provider: &str, tokens: &UpstreamTokens| acceptable(request, provider, tokens);
    let active = match introspect_for(ctx, caller, token, origin, now, &accept).await? {
        Introspection::Active(active) => active,
        // RFC 8693 §2.2.2: an unacceptable subject token is `invalid_request`, not
        // `invalid_grant`. Which of the reasons it was stays in the log.
        Introspection::Inactive(_) => {
            return Err(invalid_request("subject_token is not an active Tether access token for this resource"));
        }
    };
    let Some(upstream) = active.upstream else {
        // "Connect first": the token is good, the connection needs its person again.
        let mut error = OAuthError::new(
            ErrorCode::InteractionRequired,
            "the user must connect the provider again: send them to interaction_uri",
        );
        error.interaction_uri = active.interaction_uri;
        return Err(error);
    };
    Ok(Exchanged {
        access_token: upstream.access_token,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: if upstream.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer".to_owned()
        } else {
            upstream.token_type
        },
        expires_in: upstream.expires_at.map(|at| at.saturating_sub(now).max(0)),
        scope: upstream.scope,
        provider: upstream.provider,
        extra: upstream.extra,
    })
}

/// The request's target and scope against the credential it would get (checked before the
/// credential counts as released).
fn acceptable(request: &ExchangeRequest, provider: &str, upstream: &UpstreamTokens) -> Result<(), OAuthError> {
    if request.audience.as_deref().is_some_and(|a| a != provider) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "the audience is not the provider this resource's tokens are for",
        ));
    }
    let api = upstream.extra.get("api_base_url").and_then(|v| v.as_str());
    if let Some(resource) = request.resource.as_deref()
        && Some(resource.trim_end_matches('/')) != api.map(|a| a.trim_end_matches('/'))
    {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "the resource is not this provider's API"));
    }
    if let Some(requested) = request.scope.as_deref() {
        // The upstream token is what it is: a narrower scope cannot be cut out of it, a wider
        // one was never granted. Asking for what it has is fine.
        let granted: Vec<&str> = upstream.scope.as_deref().unwrap_or_default().split(' ').collect();
        if !requested.split(' ').filter(|s| !s.is_empty()).all(|s| granted.contains(&s)) {
            return Err(OAuthError::new(ErrorCode::InvalidScope, "the upstream grant does not have that scope"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ExchangeRequest {
        ExchangeRequest {
            subject_token: Some("t".into()),
            subject_token_type: Some(ACCESS_TOKEN_TYPE.into()),
            ..ExchangeRequest::default()
        }
    }

    #[test]
    fn malformed_requests_are_invalid_requests() {
        assert!(check_shape(&request()).is_ok());
        for bad in [
            ExchangeRequest { subject_token: None, ..request() },
            ExchangeRequest { subject_token: Some(String::new()), ..request() },
            ExchangeRequest { subject_token_type: None, ..request() },
            ExchangeRequest {
                subject_token_type: Some("urn:ietf:params:oauth:token-type:id_token".into()),
                ..request()
            },
            ExchangeRequest {
                actor_token: Some("a".into()),
                actor_token_type: Some(JWT_TOKEN_TYPE.into()),
                ..request()
            },
            ExchangeRequest { actor_token_type: Some(JWT_TOKEN_TYPE.into()), ..request() },
            ExchangeRequest { requested_token_type: Some(JWT_TOKEN_TYPE.into()), ..request() },
        ] {
            assert_eq!(check_shape(&bad).unwrap_err().code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }
}
