//! The registries from configuration: resources (MCP servers) and pre-registered clients.

use std::collections::HashMap;

use crate::crypto::hash;
use crate::store::ClientRecord;

use super::error::{ErrorCode, OAuthError};
use super::resource;

/// A scope a resource offers to MCP clients and the upstream scopes it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedScope {
    pub name: String,
    pub upstream: Vec<String>,
    pub description: Option<String>,
    /// Granted when the client asks for no scope at all.
    pub default: bool,
}

/// An MCP server Tether issues tokens for.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Registry id; also the username the resource uses to call introspection.
    pub id: String,
    /// The canonical URI exactly as configured: it is the `aud` of tokens for this resource.
    pub uri: String,
    pub name: String,
    pub provider: String,
    pub scopes: Vec<OfferedScope>,
    /// Digest of the introspection secret.
    pub secret_digest: String,
    /// Where connect-flow events go (signed), if anywhere.
    pub webhook: Option<crate::webhook::Webhook>,
    /// Resources this one may exchange a token it received for a token addressed to (the same
    /// user, grant and upstream credential; see `oauth::exchange`).
    pub may_exchange_for: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Registry {
    resources: Vec<Resource>,
    by_uri: HashMap<String, usize>,
    clients: HashMap<String, ClientRecord>,
}

impl Registry {
    /// Builds the registry; resource URIs must already be validated (normalizable, unique).
    pub fn new(resources: Vec<Resource>, clients: Vec<ClientRecord>) -> Self {
        let by_uri =
            resources.iter().enumerate().filter_map(|(i, r)| resource::normalize(&r.uri).map(|n| (n, i))).collect();
        let clients = clients.into_iter().map(|c| (c.client_id.clone(), c)).collect();
        Self { resources, by_uri, clients }
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// The resource whose canonical URI this is, exactly (an `aud` or an `act.sub`).
    pub fn resource_by_uri(&self, uri: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.uri == uri)
    }

    /// The resource an authorization or token request is for.
    ///
    /// RFC 8707 §2: an unknown or malformed resource is `invalid_target`. When the client
    /// sends no `resource` (clients older than MCP 2025-06-18 do not), Tether binds the token
    /// to the only configured resource, and refuses when there are several, because guessing
    /// would mint a token for a server the client did not mean.
    pub fn resource_for(&self, requested: Option<&str>) -> Result<&Resource, OAuthError> {
        match requested {
            Some(uri) => resource::normalize(uri)
                .and_then(|n| self.by_uri.get(&n))
                .and_then(|&i| self.resources.get(i))
                .ok_or_else(|| {
                    OAuthError::new(ErrorCode::InvalidTarget, "resource is not an MCP server Tether serves")
                }),
            None => match self.resources.as_slice() {
                [only] => Ok(only),
                [] => Err(OAuthError::new(ErrorCode::InvalidTarget, "no MCP servers are configured")),
                _ => Err(OAuthError::invalid_request("resource is required: Tether serves several MCP servers")),
            },
        }
    }

    /// The resource whose introspection credentials these are, compared in constant time.
    pub fn authenticate_resource(&self, id: &str, secret: &str) -> Option<&Resource> {
        let resource = self.resource(id);
        // Hash even for unknown ids so the answer takes the same time either way.
        let expected = resource.map_or("", |r| r.secret_digest.as_str());
        let ok = hash::matches_digest(secret, expected);
        resource.filter(|_| ok)
    }

    pub fn static_client(&self, client_id: &str) -> Option<&ClientRecord> {
        self.clients.get(client_id)
    }

    /// Every scope any resource offers, for `scopes_supported` in the metadata.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.resources.iter().flat_map(|r| r.scopes.iter().map(|s| s.name.clone())).collect();
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn resource(id: &str, uri: &str) -> Resource {
        Resource {
            id: id.into(),
            uri: uri.into(),
            name: id.into(),
            provider: "dev".into(),
            scopes: vec![],
            secret_digest: hash::digest("s3cret"),
            webhook: None,
            may_exchange_for: vec![],
        }
    }

    #[test]
    fn finds_resources_by_any_equivalent_uri() {
        let reg =
            Registry::new(vec![resource("a", "https://a.example/mcp"), resource("b", "https://b.example")], vec![]);
        assert_eq!(reg.resource_for(Some("HTTPS://a.example/mcp?x=1")).unwrap().id, "a");
        assert_eq!(reg.resource_for(Some("https://b.example/")).unwrap().id, "b");
        let unknown = reg.resource_for(Some("https://c.example/mcp")).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::InvalidTarget);
        assert_eq!(reg.resource_for(Some("not a uri")).unwrap_err().code, ErrorCode::InvalidTarget);
        assert_eq!(reg.resource_for(None).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_missing_resource_means_the_only_one() {
        let reg = Registry::new(vec![resource("a", "https://a.example/mcp")], vec![]);
        assert_eq!(reg.resource_for(None).unwrap().id, "a");
    }

    #[test]
    fn authenticates_resources_by_secret() {
        let reg = Registry::new(vec![resource("a", "https://a.example/mcp")], vec![]);
        assert!(reg.authenticate_resource("a", "s3cret").is_some());
        assert!(reg.authenticate_resource("a", "wrong").is_none());
        assert!(reg.authenticate_resource("b", "s3cret").is_none());
    }
}
