//! The audit trail: one event per security-relevant act, as CloudEvents 1.0 JSON.
//!
//! An event names who acted (`actor`), on what (`target`), how it ended (`outcome`) and the
//! request it came with, and the grant, user, client, resource and provider it concerns. It
//! never carries a token, a code or a secret: a released upstream credential is named by a
//! short SHA-256 thumbprint (as Auth0's Token Vault logs do), enough to correlate with the
//! provider's own logs and useless to anyone who reads it.
//!
//! Events go to three sinks (`delivery`): a log target of their own (`tether::audit`, always
//! on), a Redis Stream trimmed by age that the admin API reads, and an optional signed
//! webhook. Stream and webhook are fed from a bounded queue off the request path: a slow sink
//! never slows a request, and what cannot be queued is counted and logged.

use serde::Serialize;

use crate::clock::UnixTime;

pub mod delivery;
mod usage;

pub use delivery::{AuditSettings, Auditor};
pub use usage::{Released, Usage};

/// What happened. The CloudEvents `type` is `dev.tether.` and the dotted name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ConsentApproved,
    ConsentDenied,
    UserSignedIn,
    ConnectionMade,
    ConnectionWidened,
    ConnectionRefreshed,
    ConnectionRefreshFailed,
    /// The person connected a connection that needed them again ("connect first" link).
    ConnectionRestored,
    GrantIssued,
    TokenIssued,
    RefreshReuseDetected,
    CodeReplayed,
    CredentialReleased,
    /// An MCP server reported that the provider refused the upstream credential.
    CredentialRejected,
    GrantRevoked,
    ClientRegistered,
    ClientDeleted,
    AdminCall,
}

impl EventType {
    pub const ALL: [EventType; 18] = [
        Self::ConsentApproved,
        Self::ConsentDenied,
        Self::UserSignedIn,
        Self::ConnectionMade,
        Self::ConnectionWidened,
        Self::ConnectionRefreshed,
        Self::ConnectionRefreshFailed,
        Self::ConnectionRestored,
        Self::GrantIssued,
        Self::TokenIssued,
        Self::RefreshReuseDetected,
        Self::CodeReplayed,
        Self::CredentialReleased,
        Self::CredentialRejected,
        Self::GrantRevoked,
        Self::ClientRegistered,
        Self::ClientDeleted,
        Self::AdminCall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ConsentApproved => "dev.tether.consent.approved",
            Self::ConsentDenied => "dev.tether.consent.denied",
            Self::UserSignedIn => "dev.tether.user.signed_in",
            Self::ConnectionMade => "dev.tether.connection.made",
            Self::ConnectionWidened => "dev.tether.connection.widened",
            Self::ConnectionRefreshed => "dev.tether.connection.refreshed",
            Self::ConnectionRefreshFailed => "dev.tether.connection.refresh_failed",
            Self::ConnectionRestored => "dev.tether.connection.restored",
            Self::GrantIssued => "dev.tether.grant.issued",
            Self::TokenIssued => "dev.tether.token.issued",
            Self::RefreshReuseDetected => "dev.tether.token.reuse_detected",
            Self::CodeReplayed => "dev.tether.code.replayed",
            Self::CredentialReleased => "dev.tether.credential.released",
            Self::CredentialRejected => "dev.tether.credential.rejected",
            Self::GrantRevoked => "dev.tether.grant.revoked",
            Self::ClientRegistered => "dev.tether.client.registered",
            Self::ClientDeleted => "dev.tether.client.deleted",
            Self::AdminCall => "dev.tether.admin.call",
        }
    }

    /// The type a CloudEvents `type` names, in full (`dev.tether.grant.revoked`) or without
    /// the prefix (`grant.revoked`).
    pub fn parse(name: &str) -> Option<Self> {
        let full = if name.starts_with("dev.tether.") { name.to_owned() } else { format!("dev.tether.{name}") };
        Self::ALL.into_iter().find(|t| t.name() == full)
    }
}

/// What a person's recent activity (the account page) is made of: events about them, never
/// their every token use (`token.issued` is left out; releases are coalesced).
pub const ACTIVITY: [EventType; 9] = [
    EventType::UserSignedIn,
    EventType::ConnectionMade,
    EventType::ConnectionWidened,
    EventType::ConnectionRefreshed,
    EventType::ConnectionRefreshFailed,
    EventType::ConnectionRestored,
    EventType::GrantIssued,
    EventType::CredentialReleased,
    EventType::GrantRevoked,
];

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// The person signing in or using the account page.
    User,
    /// An admin token (its id, never the token).
    Admin,
    /// An MCP client (OAuth client id).
    Client,
    /// An MCP server (resource id).
    Resource,
    /// Tether itself (reuse detection, expiry, an upstream refusal).
    System,
}

impl Actor {
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self { kind, id: Some(id.into()) }
    }

    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

/// The request an event came with (none for background work).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// An event's `data`: everything but the envelope. Absent members are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventData {
    pub actor: Actor,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// SHA-256 of the upstream access token released, base64url, first 16 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_token_thumbprint: Option<String>,
    /// How many acts this event stands for (aggregated credential releases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Grants a bulk action touched, its dry-run flag, an admin call's route, ...
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "is_default")]
    pub request: Origin,
}

fn is_default(origin: &Origin) -> bool {
    *origin == Origin::default()
}

/// An event being built: the type, the actor and the outcome, then what it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    /// When it happened (milliseconds since the epoch).
    pub at_ms: i64,
    pub data: EventData,
}

impl Event {
    pub fn new(kind: EventType, actor: Actor, outcome: Outcome, now: UnixTime) -> Self {
        let data = EventData {
            actor,
            outcome,
            reason: None,
            grant_id: None,
            user: None,
            client_id: None,
            resource: None,
            provider: None,
            scope: Vec::new(),
            upstream_token_thumbprint: None,
            count: None,
            details: serde_json::Map::new(),
            request: Origin::default(),
        };
        Self { kind, at_ms: now.saturating_mul(1000), data }
    }

    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.data.reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn grant(mut self, grant_id: impl Into<String>) -> Self {
        self.data.grant_id = Some(grant_id.into());
        self
    }

    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.data.user = Some(user.into());
        self
    }

    #[must_use]
    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.data.client_id = Some(client_id.into());
        self
    }

    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.data.resource = Some(resource.into());
        self
    }

    #[must_use]
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.data.provider = Some(provider.into());
        self
    }

    #[must_use]
    pub fn scope(mut self, scope: &[String]) -> Self {
        self.data.scope = scope.to_vec();
        self
    }

    #[must_use]
    pub fn thumbprint_of(mut self, upstream_access_token: &str) -> Self {
        self.data.upstream_token_thumbprint = Some(thumbprint(upstream_access_token));
        self
    }

    #[must_use]
    pub fn count(mut self, count: u64) -> Self {
        self.data.count = Some(count);
        self
    }

    #[must_use]
    pub fn detail(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.data.details.insert(name.to_owned(), value.into());
        self
    }

    #[must_use]
    pub fn origin(mut self, origin: &Origin) -> Self {
        self.data.request = origin.clone();
        self
    }

    /// The CloudEvents 1.0 JSON envelope (structured mode), with `id` and `source`.
    pub fn envelope(&self, id: &str, source: &str) -> serde_json::Value {
        serde_json::json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": self.kind.name(),
            "time": rfc3339(self.at_ms),
            "subject": self.data.grant_id,
            "datacontenttype": "application/json",
            "data": self.data,
        })
    }
}

/// A short, non-reversible name for an upstream token: base64url(SHA-256)[..16].
pub fn thumbprint(token: &str) -> String {
    crate::crypto::hash::digest(token).chars().take(16).collect()
}

/// RFC 3339 UTC time with milliseconds, from milliseconds since the epoch.
pub fn rfc3339(at_ms: i64) -> String {
    let secs = at_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::clock::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        at_ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_342_400_000), "2026-12-04T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn an_event_is_a_cloudevent_and_carries_a_thumbprint_never_the_token() {
        let event = Event::new(
            EventType::CredentialReleased,
            Actor::new(ActorKind::Resource, "files"),
            Outcome::Success,
            1_000,
        )
        .grant("g1")
        .client("c1")
        .thumbprint_of("gho_secret_upstream_token");
        let json = event.envelope("e1", "https://tether.example").to_string();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["type"], "dev.tether.credential.released");
        assert_eq!(value["subject"], "g1");
        assert_eq!(value["data"]["actor"], serde_json::json!({"type": "resource", "id": "files"}));
        assert_eq!(value["data"]["upstream_token_thumbprint"].as_str().unwrap().len(), 16);
        assert!(!json.contains("gho_secret"), "{json}");
    }

    #[test]
    fn types_parse_with_or_without_their_prefix() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.name()), Some(kind));
            assert_eq!(EventType::parse(kind.name().trim_start_matches("dev.tether.")), Some(kind));
        }
        assert_eq!(EventType::parse("grant.nope"), None);
    }
}
