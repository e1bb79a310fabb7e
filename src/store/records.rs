//! The records the store keeps. Plain data: the `oauth` layer gives them meaning.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// Where a client's registration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    /// `POST /register` (RFC 7591); kept in the store, collected when unused.
    #[default]
    Dynamic,
    /// Pre-registered in the configuration.
    Configured,
    /// A Client ID Metadata Document fetched from the `client_id` URL.
    Document,
}

/// A client: registered with `POST /register`, configured, or described by a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    #[serde(default)]
    pub source: ClientSource,
    /// SHA-256 digest of the client secret; absent for public clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,
    /// SHA-256 digest of the RFC 7592 registration access token (dynamic clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_token_digest: Option<String>,
    pub issued_at: UnixTime,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

/// A validated authorization request, as the client sent it and Tether resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRecord {
    pub client_id: String,
    /// The redirect URI the client sent (or the only one it registered); the code is bound
    /// to it and `/token` must present the same string.
    pub redirect_uri: String,
    /// Whether the request carried `redirect_uri` (RFC 6749 §4.1.3: then `/token` must too).
    pub redirect_uri_sent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub code_challenge: String,
    /// Id of the resource (MCP server) in the registry.
    pub resource: String,
    /// MCP scopes to grant (after mapping against the resource's offer); wider than
    /// `requested_scope` when this authorization widens an earlier grant.
    pub scope: Vec<String>,
    /// The MCP scopes this request asked for, granted instead of `scope` when another user
    /// signs in upstream than the one who holds the grant being widened.
    #[serde(default)]
    pub requested_scope: Vec<String>,
    /// The earlier grant (same browser, client and resource) this authorization widens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widens: Option<String>,
    /// Whether a refresh token may be issued for this authorization.
    pub offline: bool,
    /// The client as the user was shown it, for the grant's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_source: Option<ClientSource>,
}

/// An authorization request waiting for the user's decision on the consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub request: AuthorizationRecord,
    /// Digest of the browser-binding cookie set with the consent page.
    pub binding_digest: String,
    /// Digest of the client as shown on the page, for remembering the approval.
    #[serde(default)]
    pub client_digest: String,
    pub created_at: UnixTime,
}

/// An approved request waiting for the upstream provider's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    pub request: AuthorizationRecord,
    pub binding_digest: String,
    /// Provider id the browser was sent to.
    pub provider: String,
    /// Tether's PKCE verifier for the upstream leg. Useless without the upstream code.
    pub upstream_verifier: String,
    /// OpenID providers: the nonce the ID token must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_nonce: Option<String>,
    pub upstream_scopes: Vec<String>,
    pub created_at: UnixTime,
    /// Under a login provider: the user who is connecting this provider (the callback makes
    /// the connection theirs, whoever the upstream account is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A sign-in at the login provider rather than an upstream connection: after it, the
    /// browser resumes the authorization request (these are its parameters, a query string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// A sign-in to the account page: no client waits for it; after it the browser goes to
    /// `/account` and errors are shown as pages (`request` is a placeholder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub account: bool,
    /// A reconnection ("connect first" link): the connection it is for, and the link's digest
    /// (it completes once). The callback changes nothing unless the same account signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<Reconnect>,
}

/// What a reconnection's sign-in is for (see `oauth::reconnect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconnect {
    pub connection: String,
    pub link: String,
}

/// An authorization code, bound to everything `/token` must check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub code_challenge: String,
    pub resource: String,
    pub scope: Vec<String>,
    pub grant_id: String,
    pub issued_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    /// Revoked by the client, an operator, or replay detection.
    Revoked,
    /// The upstream provider refused to refresh: the user must authorize again.
    Dead,
    /// The upstream access token expired and there is nothing to refresh it with (providers
    /// that issue no refresh token): the user must authorize again.
    Expired,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Dead => "dead",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            "dead" => Some(Self::Dead),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// One user's authorization of one client for one resource, holding the upstream tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub info: GrantInfo,
    pub status: GrantStatus,
    /// The upstream token set, sealed by `crypto::seal` with this grant as associated data.
    pub upstream: Vec<u8>,
    /// Where the grant's refresh family stands; `None` until its first refresh token.
    pub family: Option<RefreshFamily>,
    /// When and by which resource it was last used, and how often (coalesced writes).
    pub usage: GrantUsage,
    /// Who revoked it, when and why; kept while the revoked grant is.
    pub tombstone: Option<Tombstone>,
}

impl GrantRecord {
    /// A new, active grant: no refresh family yet, never used.
    pub fn new(id: String, info: GrantInfo, upstream: Vec<u8>) -> Self {
        Self {
            id,
            info,
            status: GrantStatus::Active,
            upstream,
            family: None,
            usage: GrantUsage::default(),
            tombstone: None,
        }
    }
}

impl GrantRecord {
    /// The upstream connection whose tokens the grant uses; `None` for grants made before
    /// connections, which hold their own tokens.
    pub fn connection_id(&self) -> Option<&str> {
        connection_of(&self.id)
    }
}

/// The connection a grant id names: grants on a connection are `<connection>-<random>`
/// (the connection id is 24 lowercase hex digits), so that the grant's keys and the
/// connection's share a hash slot (one round trip, one script). Grants made before
/// connections have 32 hex digits and no `-`.
pub fn connection_of(grant_id: &str) -> Option<&str> {
    let (connection, rest) = grant_id.split_once('-')?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (connection.len() == LINK_ID_LEN && hex(connection) && !rest.is_empty()).then_some(connection)
}

/// Length of a connection id.
pub const LINK_ID_LEN: usize = 24;

/// How a connection stands. (A connection here is a user's link to an upstream provider;
/// the `Connection*` records above belong to the connect flow, an MCP server's session.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Active,
    /// The provider refused to refresh: every grant on it needs the user to sign in again.
    NeedsReauth,
    /// Its access token expired with nothing to refresh it: every grant on it is expired.
    Expired,
    /// Its last grant ended: the tokens are deleted.
    Ended,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Expired => "expired",
            Self::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "needs_reauth" => Some(Self::NeedsReauth),
            "expired" => Some(Self::Expired),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// What a connection says about itself: who, at which provider, with which scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The user it belongs to (`provider:subject`, or `login:<login provider>:<sub>`).
    pub user: String,
    pub provider: String,
    /// The upstream account's subject at the provider.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The upstream scopes its tokens were granted for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    pub created_at: UnixTime,
    /// When the user last signed in upstream for it (made or widened).
    #[serde(default)]
    pub connected_at: UnixTime,
    /// Its tokens are sealed to the connection and its user rather than to its upstream
    /// account: a connection made before the account was known (see `LinkRecord::awaits_account`),
    /// and every grant on it says the same. Earlier versions of Tether cannot open these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bound_to_user: bool,
}

/// A user's connection to one upstream provider: the upstream tokens every grant of that user
/// on that provider shares, so that a second client does not need a second upstream login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub id: String,
    pub info: LinkInfo,
    pub status: LinkStatus,
    /// The upstream token set, sealed with this connection as associated data; empty once ended.
    pub upstream: Vec<u8>,
}

impl LinkRecord {
    /// A connection made for a person before they signed in at its provider (an enterprise
    /// identity provider's assertion named them): no account, no tokens, waiting for them.
    pub fn awaits_account(&self) -> bool {
        self.info.subject.is_empty() && self.status == LinkStatus::NeedsReauth
    }
}

/// What revoking a grant did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// No such grant.
    Missing,
    /// Revoked; its upstream tokens are still used by other live grants on its connection.
    Shared,
    /// Revoked, and no live grant uses its upstream tokens any more: they are deleted.
    Last,
}

/// A person signed in to Tether in one browser (the `__Host-tether-session` cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    /// Digest of the browser-binding cookie the session was issued with: the session only
    /// counts together with it.
    pub binding_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub created_at: UnixTime,
}

/// A grant's use by its resource, written at most twice per grant per interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantUsage {
    pub last_used_at: Option<UnixTime>,
    /// The resource (id) that last used it.
    pub last_used_by: Option<String>,
    pub use_count: u64,
}

/// What is left to say about a revoked grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub at: UnixTime,
    /// `admin:<token id>`, `client:<client id>`, `user`, `system`.
    pub by: String,
    /// What ended it: `admin`, `client_revocation`, `refresh_reuse`, `code_replay`, ...
    pub reason: String,
}

/// A grant's refresh family: one token is current at a time, each rotation moves to the next
/// generation. Only digests are kept, and only of the current and the previous generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// The generation whose token is current (0 for the token the code exchange issued).
    pub generation: u64,
    /// Digest of the current token.
    pub current: String,
    /// Digest of the previous generation's token, once the family has rotated.
    pub previous: Option<String>,
    /// When the previous token was rotated.
    pub rotated_at: Option<UnixTime>,
}

/// The parts of a grant that never change after it is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// The user's subject at the upstream provider.
    pub subject: String,
    pub client_id: String,
    pub resource: String,
    pub provider: String,
    pub scope: Vec<String>,
    pub offline: bool,
    pub created_at: UnixTime,
    /// What people know the upstream account by (login, username or email), when the
    /// provider says; with the user's name and email. Never token material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The client as the user approved it: its name, how it registered, where it redirects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_source: Option<ClientSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_host: Option<String>,
    /// The scopes asked of the upstream provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_scope: Vec<String>,
    /// The user, when it is not the upstream identity (a login provider is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// On a connection whose tokens are sealed to its user (`LinkInfo::bound_to_user`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bound_to_user: bool,
}

impl GrantInfo {
    /// Who the grant belongs to: the signed-in user under a login provider, otherwise the
    /// upstream identity, `provider:subject`.
    pub fn user(&self) -> String {
        self.owner.clone().unwrap_or_else(|| format!("{}:{}", self.provider, self.subject))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStatus {
    Active,
    Rotated,
}

/// A refresh token of the first form (a record per token, kept after rotation for reuse
/// detection). Tokens issued since are family tokens (`RefreshFamily`); these records are
/// only read, rotated and deleted, until the last of them expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant_id: String,
    pub client_id: String,
    pub issued_at: UnixTime,
    pub status: RefreshStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<UnixTime>,
}

/// An MCP server's request to connect one of its sessions to the user's upstream account
/// (the connect flow). The browser walks Tether's own authorization for it, with Tether as
/// the client and this record's verifier as the PKCE secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The resource (MCP server) that asked, and the only one that may read or resolve it.
    pub resource: String,
    /// The server's own session id, opaque to Tether.
    pub session: String,
    pub scope: Vec<String>,
    pub verifier: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Connected,
    /// The user declined (at Tether or upstream).
    Denied,
    /// The upstream provider or Tether failed; the user may ask for a new link.
    Failed,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

/// A connection's outcome, recorded once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionOutcome {
    pub status: ConnectionStatus,
    pub at: UnixTime,
    /// A short, fixed explanation for the server (never upstream text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection and a grant as the previous version stored them (no `bound_to_user`) read
    /// as sealed to the upstream account, and writing them back adds nothing.
    #[test]
    fn connections_and_grants_of_the_previous_version_read_unchanged() {
        let link =
            r#"{"user":"gh:42","provider":"gh","subject":"42","scope":["repo"],"created_at":1,"connected_at":1}"#;
        let info: LinkInfo = serde_json::from_str(link).unwrap();
        assert!(!info.bound_to_user);
        assert_eq!(serde_json::to_string(&info).unwrap(), link, "nothing new is written");
        let grant = r#"{"subject":"42","client_id":"c","resource":"files","provider":"gh","scope":["files:read"],"offline":true,"created_at":1}"#;
        let info: GrantInfo = serde_json::from_str(grant).unwrap();
        assert!(!info.bound_to_user);
        assert_eq!(serde_json::to_string(&info).unwrap(), grant, "nothing new is written");
    }
}
