//! What the admin API shows of grants and users: who, which client, which MCP server, what
//! scopes, when used. Never token material.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::store::{ClientSource, GrantRecord, GrantStatus};

use super::super::registry::Registry;

/// A grant's state as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    /// The upstream provider refused a refresh: the user must authorize again.
    NeedsReauth,
    /// The upstream token expired with nothing to refresh it: the user must authorize again.
    Expired,
    Revoked,
}

impl State {
    pub(super) fn of(status: GrantStatus) -> Self {
        match status {
            GrantStatus::Active => Self::Active,
            GrantStatus::Dead => Self::NeedsReauth,
            GrantStatus::Expired => Self::Expired,
            GrantStatus::Revoked => Self::Revoked,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "needs_reauth" => Some(Self::NeedsReauth),
            "expired" => Some(Self::Expired),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A grant as the admin API shows it: who, which client, which MCP server, what scopes, when
/// used. Never token material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantView {
    pub id: String,
    pub status: State,
    pub user: UserRef,
    pub client: ClientRef,
    pub resource: ResourceRef,
    pub provider: String,
    /// The user's connection to the provider whose tokens the grant uses (none for grants
    /// made before connections, which hold their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub scope: Vec<String>,
    pub upstream_scope: Vec<String>,
    pub refresh_token: bool,
    pub created_at: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_by: Option<String>,
    pub use_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<RevokedRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRef {
    pub id: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientRef {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `dynamic` (RFC 7591), `metadata_document` (CIMD) or `pre_registered`; `unknown` for
    /// grants made before Tether recorded it.
    pub registration: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRef {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedRef {
    pub at: UnixTime,
    pub by: String,
    pub reason: String,
}

impl GrantView {
    pub fn of(grant: &GrantRecord, registry: &Registry) -> Self {
        let info = &grant.info;
        let resource = registry.resource(&info.resource);
        Self {
            id: grant.id.clone(),
            status: State::of(grant.status),
            user: UserRef {
                id: info.user(),
                subject: info.subject.clone(),
                upstream_account: info.account.clone(),
                name: info.display_name.clone(),
                email: info.email.clone(),
            },
            client: ClientRef {
                client_id: info.client_id.clone(),
                name: info.client_name.clone(),
                registration: match info.client_source {
                    Some(ClientSource::Dynamic) => "dynamic",
                    Some(ClientSource::Document) => "metadata_document",
                    Some(ClientSource::Configured) => "pre_registered",
                    None => "unknown",
                },
                redirect_host: info.redirect_host.clone(),
            },
            resource: ResourceRef {
                id: info.resource.clone(),
                uri: resource.map(|r| r.uri.clone()),
                name: resource.map(|r| r.name.clone()),
            },
            provider: info.provider.clone(),
            connection: grant.connection_id().map(str::to_owned),
            scope: info.scope.clone(),
            upstream_scope: info.upstream_scope.clone(),
            refresh_token: info.offline,
            created_at: info.created_at,
            last_used_at: grant.usage.last_used_at,
            last_used_by: grant.usage.last_used_by.clone(),
            use_count: grant.usage.use_count,
            revoked: grant.tombstone.as_ref().map(|t| RevokedRef {
                at: t.at,
                by: t.by.clone(),
                reason: t.reason.clone(),
            }),
        }
    }
}

/// A user, their upstream accounts and their grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The upstream identities the user's grants spend: provider, subject, account.
    pub connections: Vec<ConnectionRef>,
    pub grants: Vec<GrantView>,
}

/// A user's connection to an upstream provider: one upstream sign-in whose tokens the user's
/// grants on that provider share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRef {
    /// For `DELETE /admin/v1/connections/{id}`: the connection id, or `provider:subject` for
    /// grants made before connections.
    pub id: String,
    pub provider: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_account: Option<String>,
    /// `active`, `needs_reauth` (the provider refused a refresh), `expired` (its token
    /// expired with no refresh token), `waiting` (made for the person by an enterprise
    /// identity provider's assertion; no account connected yet), `ended` (no live grant
    /// left; its tokens are deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// The upstream scopes its tokens were granted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<UnixTime>,
    /// Live grants that use it.
    pub active_grants: usize,
}
