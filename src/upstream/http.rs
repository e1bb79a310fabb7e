//! The HTTP client Tether uses toward upstream providers.
//!
//! One `reqwest` client per provider (its own timeout), rustls only, redirects never
//! followed, response bodies capped. Responses are classified here so callers can tell a
//! refusal (the grant is bad) from an outage (try again later).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};

/// Token and userinfo responses are a few KiB; anything much larger is not one.
const MAX_BODY: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// 5xx or 429: the provider is having trouble; transient.
    #[error("upstream answered HTTP {0}")]
    Unavailable(u16),
    /// Connection refused, DNS, TLS or timeout; transient.
    #[error("upstream unreachable: {0}")]
    Transport(String),
    #[error("upstream response exceeds {MAX_BODY} bytes")]
    TooLarge,
}

#[derive(Debug, Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    /// Where the pool's connections live (see `crate::home`).
    home: crate::home::Home,
}

impl UpstreamHttp {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // SSRF and token leakage: an upstream endpoint never gets to send Tether elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self { client, home: crate::home::Home::here() })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request and reads a bounded body; 5xx and 429 become [`HttpError::Unavailable`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), HttpError> {
        self.home
            .run(async {
                let response = request.send().await.map_err(|e| HttpError::Transport(transport(&e)))?;
                let status = response.status().as_u16();
                if status >= 500 || status == 429 {
                    return Err(HttpError::Unavailable(status));
                }
                Ok((status, read_capped(response).await?))
            })
            .await
    }

    async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.home.run(self.exchange(request)).await
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request =
            reqwest::Request::try_from(request).map_err(|e| HttpError::Transport(format!("bad request: {e}")))?;
        let response = self.client.execute(request).await.map_err(|e| HttpError::Transport(transport(&e)))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(HttpError::Unavailable(status.as_u16()));
        }
        let headers = response.headers().clone();
        let body = read_capped(response).await?;
        // GitHub (and some others) answer token-endpoint errors with 200 and an `error`
        // member; RFC 6749 §5.2 says 400. Present them as what they are.
        let status =
            if status.is_success() && is_error_body(&body) { oauth2::http::StatusCode::BAD_REQUEST } else { status };
        let mut out = HttpResponse::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Transport(transport(&e)))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn is_error_body(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("error") && !o.contains_key("access_token")))
        .unwrap_or(false)
}

/// A transport error for the log, without the URL (it may carry a code or state).
fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}
