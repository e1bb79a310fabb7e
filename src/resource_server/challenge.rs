//! What an MCP server serves and answers so that MCP clients find Tether (MCP authorization,
//! RFC 9728, RFC 6750).

use serde_json::{Value, json};
use url::Url;

/// RFC 9728 §3.1: the metadata URL for a resource: `/.well-known/oauth-protected-resource`
/// inserted between the origin and the resource's path (`https://h/mcp` →
/// `https://h/.well-known/oauth-protected-resource/mcp`). MCP clients try this one first.
pub fn resource_metadata_url(resource: &str) -> Option<String> {
    let url = Url::parse(resource).ok()?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    Some(format!("{origin}/.well-known/oauth-protected-resource{path}"))
}

/// RFC 9728 §2 protected resource metadata. `resource` must be the exact MCP endpoint URL
/// (clients compare it with the URL they were given) and `issuer` Tether's issuer, byte for
/// byte. `offline_access` is not listed (MCP 2026-07-28: the resource SHOULD NOT).
pub fn protected_resource_metadata(resource: &str, issuer: &str, scopes: &[&str]) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": scopes.iter().filter(|s| **s != "offline_access").collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
    })
}

/// A `WWW-Authenticate: Bearer ...` challenge (RFC 6750 §3). Send it as the first (or only)
/// challenge: some clients read only the first.
#[derive(Debug, Clone, Default)]
pub struct BearerChallenge {
    pub resource_metadata: String,
    /// `invalid_token` when a token was sent and is not active; `insufficient_scope` (with a
    /// 403) when it lacks scopes; absent when no token was sent.
    pub error: Option<&'static str>,
    /// The scopes the request needs (for `insufficient_scope`, include those already granted:
    /// older SDK clients do not add them up themselves).
    pub scope: Option<String>,
}

impl BearerChallenge {
    pub fn header_value(&self) -> String {
        let mut parts = Vec::new();
        if let Some(error) = self.error {
            parts.push(format!("error=\"{error}\""));
        }
        if let Some(scope) = &self.scope {
            parts.push(format!("scope=\"{}\"", quote(scope)));
        }
        parts.push(format!("resource_metadata=\"{}\"", quote(&self.resource_metadata)));
        format!("Bearer {}", parts.join(", "))
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_insert_the_well_known_segment_before_the_path() {
        assert_eq!(
            resource_metadata_url("https://mcp.example.com/mcp").unwrap(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            resource_metadata_url("http://127.0.0.1:9000/mcp/").unwrap(),
            "http://127.0.0.1:9000/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(resource_metadata_url("https://h").unwrap(), "https://h/.well-known/oauth-protected-resource");
    }

    #[test]
    fn challenges_put_bearer_first_and_quote_values() {
        let c = BearerChallenge {
            resource_metadata: "https://h/.well-known/oauth-protected-resource/mcp".into(),
            error: Some("insufficient_scope"),
            scope: Some("files:read files:write".into()),
        };
        assert_eq!(
            c.header_value(),
            "Bearer error=\"insufficient_scope\", scope=\"files:read files:write\", resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\""
        );
        let bare = BearerChallenge { resource_metadata: "u".into(), ..BearerChallenge::default() };
        assert_eq!(bare.header_value(), "Bearer resource_metadata=\"u\"");
    }

    #[test]
    fn protected_resource_metadata_never_offers_offline_access() {
        let doc = protected_resource_metadata("https://h/mcp", "https://as", &["a", "offline_access"]);
        assert_eq!(doc["scopes_supported"], json!(["a"]));
        assert_eq!(doc["authorization_servers"], json!(["https://as"]));
    }
}
