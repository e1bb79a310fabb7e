//! Dynamic client registration (RFC 7591), shaped by what real MCP clients send.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::UnixTime;
use crate::crypto::{hash, random};
use crate::store::{Admission, ClientCaps, ClientRecord, ClientSource, ClientStore};

use super::error::{ErrorCode, OAuthError};
use super::{redirect, scope};

mod management;

pub use management::{deregister, read};

pub const AUTH_METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];
pub const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];
const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LEN: usize = 2048;
const MAX_TEXT_LEN: usize = 512;

/// The registration request. Unknown members are ignored (RFC 7591 §2: "The authorization
/// server MUST ignore any client metadata sent by the client that it does not understand").
#[derive(Debug, Default, Deserialize)]
pub struct RegistrationRequest {
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub application_type: Option<String>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub scope: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
}

/// RFC 7591 §3.2.1 (and RFC 7592 §3): the registered metadata plus the issued credentials.
#[derive(Debug, Serialize)]
pub struct RegistrationResponse {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: UnixTime,
    /// REQUIRED when a secret is issued; 0 means it does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    /// RFC 7592: where the client can read or delete its registration (claude.ai expects it).
    pub registration_client_uri: String,
    /// RFC 7592: the bearer token for `registration_client_uri`; only in the first response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

/// Where a client manages its registration: `{issuer}/register/{client_id}`.
pub fn management_uri(issuer: &str, client_id: &str) -> String {
    format!("{issuer}/register/{client_id}")
}

/// The metadata members echoed back; absent ones are omitted, never `null`.
#[derive(Debug, Serialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl From<&ClientRecord> for ClientMetadata {
    fn from(c: &ClientRecord) -> Self {
        Self {
            redirect_uris: c.redirect_uris.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
            grant_types: c.grant_types.clone(),
            response_types: c.response_types.clone(),
            application_type: c.application_type.clone(),
            client_name: c.client_name.clone(),
            client_uri: c.client_uri.clone(),
            logo_uri: c.logo_uri.clone(),
            tos_uri: c.tos_uri.clone(),
            policy_uri: c.policy_uri.clone(),
            contacts: c.contacts.clone(),
            scope: c.scope.clone(),
            software_id: c.software_id.clone(),
            software_version: c.software_version.clone(),
        }
    }
}

fn metadata_error(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// Registers a client. It is kept for `unused_ttl` until it first obtains tokens (the token
/// endpoint then extends its life), so the clients that some MCP hosts register on every
/// connection and never use do not pile up.
pub async fn register(
    clients: &dyn ClientStore,
    issuer: &str,
    request: RegistrationRequest,
    unused_ttl: Duration,
    caps: ClientCaps,
    now: UnixTime,
) -> Result<RegistrationResponse, OAuthError> {
    let (mut record, secret) = validate(request, now)?;
    let expires_at = now.saturating_add(i64::try_from(unused_ttl.as_secs()).unwrap_or(i64::MAX));
    match clients.admit_client(&record.client_id, expires_at, caps, now).await? {
        Admission::Admitted => {}
        Admission::TooManyClients => {
            tracing::warn!(max_clients = caps.max_clients, "registration refused: client cap reached");
            return Err(OAuthError::rate_limited(
                "this server has as many registered clients as it accepts; retry later",
                3600,
            ));
        }
        Admission::TooManyRegistrations => {
            let next_hour = (3600 - now.rem_euclid(3600)).unsigned_abs();
            tracing::warn!(per_hour = caps.per_hour, "registration refused: hourly cap reached");
            return Err(OAuthError::rate_limited("too many registrations this hour; retry later", next_hour));
        }
    }
    let management_token = random::token();
    record.secret_digest = secret.as_deref().map(hash::digest);
    record.registration_token_digest = Some(hash::digest(&management_token));
    clients.put_client(&record, unused_ttl).await?;
    Ok(RegistrationResponse {
        client_id: record.client_id.clone(),
        client_secret_expires_at: secret.as_ref().map(|_| 0),
        client_secret: secret,
        client_id_issued_at: now,
        registration_client_uri: management_uri(issuer, &record.client_id),
        registration_access_token: Some(management_token),
        metadata: ClientMetadata::from(&record),
    })
}

/// Validates the metadata into a record (without secret digest) and a secret if one is due.
pub fn validate(request: RegistrationRequest, now: UnixTime) -> Result<(ClientRecord, Option<String>), OAuthError> {
    let application_type = match text(request.application_type, "application_type")?.as_deref() {
        None => None,
        Some(t @ ("native" | "web")) => Some(t.to_owned()),
        Some(_) => return Err(metadata_error("application_type must be `native` or `web`")),
    };
    let redirect_uris = redirect_uris(request.redirect_uris, application_type.as_deref() == Some("web"))?;
    // RFC 7591 §2: the default method is client_secret_basic.
    let method = text(request.token_endpoint_auth_method, "token_endpoint_auth_method")?
        .unwrap_or_else(|| "client_secret_basic".to_owned());
    if !AUTH_METHODS.contains(&method.as_str()) {
        return Err(metadata_error(format!(
            "token_endpoint_auth_method `{}` is not supported; use none, client_secret_basic or client_secret_post",
            truncate(&method)
        )));
    }
    let grant_types = grant_types(request.grant_types)?;
    let response_types = match request.response_types {
        None => vec!["code".to_owned()],
        Some(types) if types.iter().any(|t| t == "code") => vec!["code".to_owned()],
        Some(_) => return Err(metadata_error("response_types must include `code`")),
    };
    let scope = text(request.scope, "scope")?;
    scope::parse(scope.as_deref()).map_err(|_| metadata_error("scope contains invalid characters"))?;
    let contacts = request.contacts.unwrap_or_default();
    if contacts.len() > 10 || contacts.iter().any(|c| c.len() > 320) {
        return Err(metadata_error("contacts: at most 10 addresses of at most 320 characters"));
    }
    let secret = (method != "none").then(random::token);
    let record = ClientRecord {
        client_id: random::id(),
        source: ClientSource::Dynamic,
        secret_digest: None,
        registration_token_digest: None,
        issued_at: now,
        redirect_uris,
        token_endpoint_auth_method: method,
        grant_types,
        response_types,
        application_type,
        client_name: text(request.client_name, "client_name")?,
        client_uri: web_uri(request.client_uri, "client_uri")?,
        logo_uri: web_uri(request.logo_uri, "logo_uri")?,
        tos_uri: web_uri(request.tos_uri, "tos_uri")?,
        policy_uri: web_uri(request.policy_uri, "policy_uri")?,
        contacts,
        scope,
        software_id: text(request.software_id, "software_id")?,
        software_version: text(request.software_version, "software_version")?,
    };
    Ok((record, secret))
}

fn redirect_uris(uris: Option<Vec<String>>, web: bool) -> Result<Vec<String>, OAuthError> {
    let invalid = |d: String| OAuthError::new(ErrorCode::InvalidRedirectUri, d);
    let uris = uris.unwrap_or_default();
    if uris.is_empty() {
        return Err(invalid("redirect_uris is required for the authorization code grant".to_owned()));
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(format!("at most {MAX_REDIRECT_URIS} redirect_uris")));
    }
    let mut out: Vec<String> = Vec::with_capacity(uris.len());
    for uri in uris {
        if uri.len() > MAX_URI_LEN {
            return Err(invalid(format!("redirect URIs are limited to {MAX_URI_LEN} characters")));
        }
        redirect::validate_registered(&uri, web).map_err(|e| invalid(e.to_string()))?;
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    Ok(out)
}

/// Unsupported grant types (VS Code also asks for the device code grant) are dropped rather
/// than failing the registration; the response tells the client what it got.
fn grant_types(requested: Option<Vec<String>>) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(GRANT_TYPES.iter().map(|g| (*g).to_owned()).collect());
    };
    let granted: Vec<String> =
        GRANT_TYPES.iter().filter(|g| requested.iter().any(|r| r == *g)).map(|g| (*g).to_owned()).collect();
    if !granted.iter().any(|g| g == "authorization_code") {
        return Err(metadata_error("grant_types must include authorization_code"));
    }
    Ok(granted)
}

/// Optional text: trimmed, empty treated as absent, length bounded.
fn text(value: Option<String>, name: &str) -> Result<Option<String>, OAuthError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > MAX_TEXT_LEN || value.chars().any(char::is_control) {
        return Err(metadata_error(format!("{name}: at most {MAX_TEXT_LEN} printable characters")));
    }
    Ok(Some(value))
}

/// Optional informational URI: must be http(s) when present; `""` counts as absent.
fn web_uri(value: Option<String>, name: &str) -> Result<Option<String>, OAuthError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ok = value.len() <= MAX_URI_LEN && Url::parse(&value).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
    if ok { Ok(Some(value)) } else { Err(metadata_error(format!("{name} must be an http(s) URL"))) }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
