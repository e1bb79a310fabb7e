//! RFC 8693 token exchange for MCP servers: the standard way to what introspection's `upstream`
//! member hands over. An MCP server, authenticated with its resource credentials, presents a
//! Tether access token addressed to it (`subject_token`) and gets the upstream access token of
//! the grant behind it, refreshed exactly as introspection refreshes it, never the upstream
//! refresh token.

use serde::Serialize;

use crate::audit::Origin;
use crate::clock::UnixTime;

use super::error::{ErrorCode, OAuthError};
use super::introspection::{Introspection, Introspector, introspect};
use super::registry::Resource;

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

/// Exchanges `request.subject_token` for the upstream credential of its grant.
pub async fn exchange(
    ctx: Introspector<'_>,
    caller: &Resource,
    request: &ExchangeRequest,
    origin: &dyn Fn() -> Origin,
    now: UnixTime,
) -> Result<Exchanged, OAuthError> {
    let token = check_shape(request)?;
    // The same checks, refresh and audit event as introspection: a token is good only for the
    // resource it is addressed to, and its upstream token is fresh.
    let active = match introspect(ctx, caller, token, origin, now).await? {
        Introspection::Active(active) => active,
        // RFC 8693 §2.2.2: an unacceptable subject token is `invalid_request`, not
        // `invalid_grant`. Which of the reasons it was stays in the log.
        Introspection::Inactive(_) => {
            return Err(invalid_request("subject_token is not an active Tether access token for this resource"));
        }
    };
    let upstream = active.upstream;
    if request.audience.as_deref().is_some_and(|a| a != upstream.provider) {
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
