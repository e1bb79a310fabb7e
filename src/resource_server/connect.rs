//! The connect flow from the MCP server's side: ask Tether for a link for one of your
//! sessions, learn when the user connected, and get the session's upstream credential.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::introspection::UpstreamCredential;
use crate::clock::UnixTime;

/// A link Tether issued for a session.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectLink {
    pub id: String,
    pub session: String,
    /// Show this to the user (a tool result, or URL-mode elicitation).
    pub connect_url: String,
    pub expires_at: UnixTime,
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Pending,
    Connected,
    Denied,
    Failed,
    Expired,
}

/// A connected session's upstream credential.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectedSession {
    pub session: String,
    /// The user at the upstream provider.
    pub sub: String,
    #[serde(default)]
    pub scope: String,
    pub upstream: UpstreamCredential,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Tether or the upstream provider is briefly unavailable: retry.
    #[error("Tether is unavailable: {0}")]
    Unavailable(String),
    /// Wrong resource credentials.
    #[error("Tether refused this server's credentials")]
    Unauthorized,
    #[error("Tether refused the request: {0}")]
    Refused(String),
    #[error("unexpected answer from Tether: {0}")]
    Protocol(String),
}

/// Calls Tether's connect API as one resource.
#[derive(Debug, Clone)]
pub struct ConnectClient {
    http: reqwest::Client,
    issuer: String,
    resource_id: String,
    secret: SecretString,
}

impl ConnectClient {
    pub fn new(
        issuer: impl Into<String>,
        resource_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        // Long enough for a long-poll of 60 s.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(75))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            resource_id: resource_id.into(),
            secret: SecretString::from(secret.into()),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.issuer))
            .basic_auth(&self.resource_id, Some(self.secret.expose_secret()))
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ConnectError> {
        let response = request.send().await.map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| ConnectError::Protocol(e.to_string()))?;
        let described = || body["error_description"].as_str().unwrap_or("").to_owned();
        match status.as_u16() {
            200 | 201 => serde_json::from_value(body.clone()).map_err(|e| ConnectError::Protocol(e.to_string())),
            401 => Err(ConnectError::Unauthorized),
            429 | 503 => Err(ConnectError::Unavailable(described())),
            _ => Err(ConnectError::Refused(described())),
        }
    }

    /// A single-use link connecting `session` (your own id for it) to the user's upstream
    /// account; `scope` is one of your resource's scopes or none for the defaults.
    pub async fn start(&self, session: &str, scope: Option<&str>) -> Result<ConnectLink, ConnectError> {
        let mut body = json!({ "session": session });
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        self.call(self.request(reqwest::Method::POST, "/connect").json(&body)).await
    }

    /// The connection's state, waiting up to `wait` (at most 60 s) while it is pending.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<ConnectionState, ConnectError> {
        #[derive(Deserialize)]
        struct View {
            status: ConnectionState,
        }
        let path = format!("/connect/{id}?wait={}", wait.as_secs().min(60));
        let view: View = self.call(self.request(reqwest::Method::GET, &path)).await?;
        Ok(view.status)
    }

    /// The session's upstream credential, refreshed by Tether when needed; `None` when the
    /// session is not connected (or no longer: the user or the provider ended it).
    pub async fn resolve(&self, session: &str) -> Result<Option<ConnectedSession>, ConnectError> {
        let body: serde_json::Value = self
            .call(self.request(reqwest::Method::POST, "/connect/resolve").json(&json!({ "session": session })))
            .await?;
        if body["connected"] != true {
            return Ok(None);
        }
        serde_json::from_value(body).map(Some).map_err(|e| ConnectError::Protocol(e.to_string()))
    }

    /// Disconnects the session; `true` when it was connected.
    pub async fn disconnect(&self, session: &str) -> Result<bool, ConnectError> {
        let path = format!("/connect/{}", urlencode(session));
        let body: serde_json::Value = self.call(self.request(reqwest::Method::DELETE, &path)).await?;
        Ok(body["disconnected"] == true)
    }
}

fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}
