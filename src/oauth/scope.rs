//! Scopes: what a client asked for, what the resource offers, what goes upstream.

use super::error::{ErrorCode, OAuthError};
use super::registry::Resource;

/// Asks for a refresh token (OpenID Connect Core §11, MCP 2026-07-28 "Refresh Tokens").
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The outcome of scope negotiation for one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeGrant {
    /// MCP scopes granted, in the resource's order.
    pub granted: Vec<String>,
    /// Upstream scopes to request: the provider's own, then each granted scope's mapping.
    pub upstream: Vec<String>,
    /// The client asked for `offline_access`.
    pub offline: bool,
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Parses a space-delimited scope parameter.
pub fn parse(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(token) {
            return Err(OAuthError::new(ErrorCode::InvalidScope, "scope contains invalid characters"));
        }
        if !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    }
    Ok(out)
}

/// Decides the scopes of an authorization.
///
/// Clients often ask for every scope the authorization server advertises (VS Code,
/// Inspector, LibreChat), which on a multi-resource broker includes other resources' scopes;
/// RFC 6749 §3.3 lets the server grant fewer than requested, so scopes this resource does not
/// offer are dropped. Asking only for scopes it does not offer is `invalid_scope`.
pub fn negotiate(
    requested: Option<&str>,
    resource: &Resource,
    provider_scopes: &[String],
) -> Result<ScopeGrant, OAuthError> {
    let requested = parse(requested)?;
    let offline = requested.iter().any(|s| s == OFFLINE_ACCESS);
    let asked: Vec<&String> = requested.iter().filter(|s| *s != OFFLINE_ACCESS).collect();
    let granted: Vec<String> = resource
        .scopes
        .iter()
        .filter(|offer| if asked.is_empty() { offer.default } else { asked.contains(&&offer.name) })
        .map(|offer| offer.name.clone())
        .collect();
    if !asked.is_empty() && granted.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("none of the requested scopes is offered by {}", resource.name),
        ));
    }
    Ok(ScopeGrant { upstream: upstream_scopes(&granted, resource, provider_scopes), granted, offline })
}

/// The upstream scopes that back a set of granted MCP scopes.
/// The resource's offered scopes among `granted`, with their descriptions (consent pages).
pub fn described(resource: &Resource, granted: &[String]) -> Vec<(String, Option<String>)> {
    resource
        .scopes
        .iter()
        .filter(|s| granted.contains(&s.name))
        .map(|s| (s.name.clone(), s.description.clone()))
        .collect()
}

pub fn upstream_scopes(granted: &[String], resource: &Resource, provider_scopes: &[String]) -> Vec<String> {
    let mut upstream: Vec<String> = Vec::new();
    let mapped =
        resource.scopes.iter().filter(|offer| granted.contains(&offer.name)).flat_map(|offer| offer.upstream.iter());
    for scope in provider_scopes.iter().chain(mapped) {
        if !upstream.contains(scope) {
            upstream.push(scope.clone());
        }
    }
    upstream
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::registry::OfferedScope;

    fn resource() -> Resource {
        let offer = |name: &str, upstream: &[&str], default: bool| OfferedScope {
            name: name.into(),
            upstream: upstream.iter().map(|s| s.to_string()).collect(),
            description: None,
            default,
        };
        Resource {
            id: "files".into(),
            uri: "https://files.example/mcp".into(),
            name: "Files".into(),
            provider: "dev".into(),
            scopes: vec![
                offer("files:read", &["repo:read"], true),
                offer("files:write", &["repo:write", "repo:read"], false),
            ],
            secret_digest: String::new(),
            may_exchange_for: vec![],
            webhook: None,
        }
    }

    fn base() -> Vec<String> {
        vec!["user".into()]
    }

    #[test]
    fn maps_requested_scopes_upstream_without_duplicates() {
        let g = negotiate(Some("files:write files:read"), &resource(), &base()).unwrap();
        assert_eq!(g.granted, ["files:read", "files:write"]);
        assert_eq!(g.upstream, ["user", "repo:read", "repo:write"]);
        assert!(!g.offline);
    }

    #[test]
    fn no_scope_means_the_defaults() {
        let g = negotiate(None, &resource(), &base()).unwrap();
        assert_eq!(g.granted, ["files:read"]);
        assert_eq!(g.upstream, ["user", "repo:read"]);
        let g = negotiate(Some("offline_access"), &resource(), &base()).unwrap();
        assert_eq!(g.granted, ["files:read"]);
        assert!(g.offline);
    }

    #[test]
    fn drops_scopes_of_other_resources_but_refuses_only_foreign_ones() {
        let g = negotiate(Some("files:read calendar:read"), &resource(), &base()).unwrap();
        assert_eq!(g.granted, ["files:read"]);
        let err = negotiate(Some("calendar:read"), &resource(), &base()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn refuses_malformed_scope_strings() {
        assert_eq!(parse(Some("a\"b")).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(parse(Some("a\\b")).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(parse(Some("  a  a b ")).unwrap(), ["a", "b"]);
    }
}
