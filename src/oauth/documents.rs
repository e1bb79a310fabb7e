//! Clients described by Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-
//! document; MCP 2025-11-25): an https `client_id` with a path names a JSON document that
//! Tether fetches (safely, see `client_metadata`), checks and caches.

use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use crate::client_metadata::{FetchError, Fetcher};
use crate::clock::UnixTime;
use crate::store::{ClientRecord, ClientSource};

use super::{redirect, scope};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("the client_id is not a metadata document URL: {0}")]
    NotADocumentUrl(String),
    #[error("the metadata document could not be fetched: {0}")]
    Fetch(#[from] FetchError),
    #[error("the metadata document is not usable: {0}")]
    Invalid(String),
}

/// Cache lifetimes, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// When the response says nothing about caching.
    pub default_ttl: u64,
    /// Upper bound on any `max-age`.
    pub max_ttl: u64,
    /// How long past freshness a copy may serve while the document's host fails.
    pub stale_if_error: u64,
}

struct Cached {
    client: Arc<ClientRecord>,
    fresh_until: UnixTime,
    usable_until: UnixTime,
}

/// Resolves document clients: cached per HTTP caching headers, refetched when stale, and
/// served stale (up to `stale_if_error`) while the document's host is failing.
pub struct DocumentClients {
    fetcher: Fetcher,
    policy: CachePolicy,
    cache: moka::sync::Cache<String, Arc<Cached>>,
}

impl std::fmt::Debug for DocumentClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentClients").field("cached", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

/// Whether a `client_id` claims to be a document URL (and is then never looked up elsewhere).
pub fn is_document_id(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

impl DocumentClients {
    pub fn new(fetcher: Fetcher, policy: CachePolicy) -> Self {
        Self { fetcher, policy, cache: moka::sync::Cache::new(10_000) }
    }

    pub async fn client(&self, client_id: &str, now: UnixTime) -> Result<Arc<ClientRecord>, DocumentError> {
        let url = check_url(client_id)?;
        let cached = self.cache.get(client_id);
        if let Some(entry) = cached.as_ref().filter(|e| e.fresh_until > now) {
            return Ok(entry.client.clone());
        }
        let fetched = match self.fetcher.fetch(&url).await {
            Ok(fetched) => fetched,
            Err(e) if e.is_transient() => {
                if let Some(entry) = cached.filter(|e| e.usable_until > now) {
                    tracing::warn!(%client_id, error = %e, "metadata document unavailable; using the cached copy");
                    return Ok(entry.client.clone());
                }
                return Err(e.into());
            }
            Err(e) => {
                self.cache.invalidate(client_id);
                return Err(e.into());
            }
        };
        let client = Arc::new(parse(client_id, &fetched.body, now).inspect_err(|_| self.cache.invalidate(client_id))?);
        let directives = fetched.cache;
        if !directives.no_store {
            let fresh = if directives.no_cache {
                0
            } else {
                directives.max_age.unwrap_or(self.policy.default_ttl).min(self.policy.max_ttl)
            };
            let stale = directives.stale_if_error.unwrap_or(self.policy.stale_if_error).min(self.policy.max_ttl);
            let entry = Cached {
                client: client.clone(),
                fresh_until: now.saturating_add(secs(fresh)),
                usable_until: now.saturating_add(secs(fresh)).saturating_add(secs(stale)),
            };
            self.cache.insert(client_id.to_owned(), Arc::new(entry));
        }
        Ok(client)
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// Why a `client_id` is not a usable document URL.
pub fn check_url(client_id: &str) -> Result<Url, DocumentError> {
    let bad = |why: &str| Err(DocumentError::NotADocumentUrl(why.to_owned()));
    let Ok(url) = Url::parse(client_id) else { return bad("not a URL") };
    if url.scheme() != "https" {
        return bad("must use https");
    }
    if url.host().is_none() {
        return bad("has no host");
    }
    // The draft: MUST contain a path component, MUST NOT contain dot segments, a fragment,
    // or a username or password.
    if url.path() == "/" || url.path().is_empty() {
        return bad("must have a path");
    }
    let path = client_id.split(['?', '#']).next().unwrap_or("");
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return bad("must not contain . or .. segments");
    }
    if client_id.contains('#') {
        return bad("must not have a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not contain credentials");
    }
    Ok(url)
}

#[derive(Debug, Deserialize)]
struct Document {
    client_id: Option<String>,
    client_name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    application_type: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
}

/// Parses and checks a fetched document for `client_id` into a public client.
pub fn parse(client_id: &str, body: &[u8], now: UnixTime) -> Result<ClientRecord, DocumentError> {
    let invalid = |why: String| DocumentError::Invalid(why);
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not a JSON client metadata object ({e})")))?;
    // The draft: the document's client_id MUST equal the URL it was fetched from, exactly.
    if doc.client_id.as_deref() != Some(client_id) {
        return Err(invalid("its client_id is not the URL it was fetched from".to_owned()));
    }
    let client_name =
        doc.client_name.filter(|n| !n.trim().is_empty()).ok_or_else(|| invalid("client_name is missing".to_owned()))?;
    if client_name.len() > 512 || client_name.chars().any(char::is_control) {
        return Err(invalid("client_name is too long or has control characters".to_owned()));
    }
    let redirect_uris =
        doc.redirect_uris.filter(|u| !u.is_empty()).ok_or_else(|| invalid("redirect_uris is missing".to_owned()))?;
    if redirect_uris.len() > 20 {
        return Err(invalid("more than 20 redirect_uris".to_owned()));
    }
    let web = doc.application_type.as_deref() == Some("web");
    for uri in &redirect_uris {
        redirect::validate_registered(uri, web).map_err(|e| invalid(e.to_string()))?;
    }
    // Documents describe public clients: no shared secret can be published in them, and
    // Tether does not support private_key_jwt.
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(invalid(format!("token_endpoint_auth_method `{}` is not supported (only none)", short(other))));
        }
    }
    if doc.response_types.as_ref().is_some_and(|t| !t.iter().any(|t| t == "code")) {
        return Err(invalid("response_types must include code".to_owned()));
    }
    let grant_types = match doc.grant_types {
        None => vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        Some(g) => ["authorization_code", "refresh_token"]
            .iter()
            .filter(|s| g.iter().any(|x| x == *s))
            .map(|s| (*s).to_owned())
            .collect(),
    };
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid("grant_types must include authorization_code".to_owned()));
    }
    if scope::parse(doc.scope.as_deref()).is_err() {
        return Err(invalid("scope has invalid characters".to_owned()));
    }
    let web_uri = |u: Option<String>| u.filter(|u| Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http")));
    Ok(ClientRecord {
        client_id: client_id.to_owned(),
        source: ClientSource::Document,
        secret_digest: None,
        registration_token_digest: None,
        issued_at: now,
        redirect_uris,
        token_endpoint_auth_method: "none".to_owned(),
        grant_types,
        response_types: vec!["code".to_owned()],
        application_type: doc.application_type.filter(|t| t == "web" || t == "native"),
        client_name: Some(client_name),
        client_uri: web_uri(doc.client_uri),
        logo_uri: web_uri(doc.logo_uri),
        tos_uri: web_uri(doc.tos_uri),
        policy_uri: web_uri(doc.policy_uri),
        contacts: vec![],
        scope: doc.scope,
        software_id: doc.software_id,
        software_version: doc.software_version,
    })
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "https://claude.ai/oauth/claude-code-client-metadata";

    fn doc(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn accepts_claude_codes_document() {
        let body = doc(json!({
            "client_id": ID, "client_name": "Claude Code",
            "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        }));
        let client = parse(ID, &body, 0).unwrap();
        assert_eq!(client.source, ClientSource::Document);
        assert_eq!(client.token_endpoint_auth_method, "none");
        assert_eq!(client.redirect_uris.len(), 2);
    }

    #[test]
    fn refuses_documents_that_do_not_describe_this_url_or_a_public_client() {
        let good = json!({"client_id": ID, "client_name": "C", "redirect_uris": ["https://c.example/cb"]});
        let cases = [
            (
                "other client_id",
                json!({"client_id": "https://evil.example/doc", "client_name": "C", "redirect_uris": ["https://c.example/cb"]}),
            ),
            (
                "client_id with a trailing slash",
                json!({"client_id": format!("{ID}/"), "client_name": "C", "redirect_uris": ["https://c.example/cb"]}),
            ),
            ("no name", json!({"client_id": ID, "redirect_uris": ["https://c.example/cb"]})),
            ("no redirect URIs", json!({"client_id": ID, "client_name": "C"})),
            (
                "javascript redirect",
                json!({"client_id": ID, "client_name": "C", "redirect_uris": ["javascript:alert(1)"]}),
            ),
            (
                "a secret method",
                json!({"client_id": ID, "client_name": "C", "redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            ),
            (
                "private_key_jwt",
                json!({"client_id": ID, "client_name": "C", "redirect_uris": ["https://c.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            ),
            ("an array", json!([good])),
        ];
        for (case, v) in cases {
            assert!(matches!(parse(ID, &doc(v), 0), Err(DocumentError::Invalid(_))), "{case}");
        }
        assert!(matches!(parse(ID, b"<html>", 0), Err(DocumentError::Invalid(_))));
        assert!(parse(ID, &doc(good), 0).is_ok());
    }

    #[test]
    fn only_https_urls_with_a_path_are_document_ids() {
        assert!(check_url(ID).is_ok());
        for bad in [
            "http://claude.ai/oauth/doc",
            "https://claude.ai",
            "https://claude.ai/",
            "https://claude.ai/a/../doc",
            "https://claude.ai/./doc",
            "https://claude.ai/doc#x",
            "https://user:pw@claude.ai/doc",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
