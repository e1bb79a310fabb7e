//! OAuth errors as the RFCs name them. The `http` layer owns the status table.

use std::borrow::Cow;

use crate::store::StoreError;

/// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 8707 §2, RFC 6750 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidToken,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UnsupportedTokenType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    InteractionRequired,
    InvalidRedirectUri,
    InvalidClientMetadata,
    ServerError,
    TemporarilyUnavailable,
    /// Over a rate limit or a registration cap: `temporarily_unavailable` on the wire (OAuth
    /// has no code of its own for it), with status 429 and `Retry-After`.
    RateLimited,
    /// RFC 6750 §3.1: the bearer token is good but lacks the scope the call needs (403).
    InsufficientScope,
    /// The admin API: no such grant, user or connection (404).
    NotFound,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidToken => "invalid_token",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::InteractionRequired => "interaction_required",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable | Self::RateLimited => "temporarily_unavailable",
            Self::InsufficientScope => "insufficient_scope",
            Self::NotFound => "not_found",
        }
    }
}

/// An error the client is told about: a code and a human-readable description that never
/// contains a secret, a token or an internal cause (those go to the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// Seconds after which a retry may succeed (`Retry-After`), for transient errors.
    pub retry_after: Option<u64>,
    /// `interaction_required`: where the person goes to make it work (a Tether link).
    pub interaction_uri: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self { code, description: description.into(), retry_after: None, interaction_uri: None }
    }

    /// Over a limit; worth retrying after `secs` (at least one).
    pub fn rate_limited(description: impl Into<Cow<'static, str>>, secs: u64) -> Self {
        Self { retry_after: Some(secs.max(1)), ..Self::new(ErrorCode::RateLimited, description) }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn server_error(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::ServerError, description)
    }

    /// The store failed: logged with its cause here, reported to the client without it.
    pub fn store(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                Self::new(ErrorCode::TemporarilyUnavailable, "the token store is unavailable; retry shortly")
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(%cause, "corrupt store record");
                Self::server_error("a stored record could not be read")
            }
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        Self::store(err)
    }
}
