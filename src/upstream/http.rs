//! The HTTP client Tether uses toward upstream providers.
//!
//! One `reqwest` client per provider (its own timeout), and a pool of the same settings per
//! HTTP worker; rustls only, redirects never followed, response bodies capped. Responses are classified here so callers can tell a
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
pub struct UpstreamHttp(std::sync::Arc<Clients>);

/// The shared pool, whose connections live on the home runtime (see `crate::home`), and one
/// pool per HTTP worker: a worker's call to the provider then stays on its own thread instead
/// of handing every request and reply to the home runtime and back.
#[derive(Debug)]
struct Clients {
    shared: reqwest::Client,
    home: crate::home::Home,
    timeout: Duration,
    workers: crate::home::PerWorker<reqwest::Client>,
}

impl UpstreamHttp {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let shared = build(timeout)?;
        Ok(Self(std::sync::Arc::new(Clients {
            shared,
            home: crate::home::Home::here(),
            timeout,
            workers: crate::home::PerWorker::default(),
        })))
    }

    /// For building requests to [`send`](Self::send) (which may send them through another
    /// pool of the same settings).
    pub fn client(&self) -> &reqwest::Client {
        &self.0.shared
    }

    /// This worker's pool, if the caller runs on an HTTP worker.
    fn local(&self) -> Option<reqwest::Client> {
        self.0.workers.get(0, || build(self.0.timeout).ok())
    }

    /// Runs `call` with this worker's pool, or with the shared one on the home runtime.
    async fn with_client<T>(&self, call: impl AsyncFnOnce(&reqwest::Client) -> T) -> T {
        match self.local() {
            Some(client) => call(&client).await,
            None => self.0.home.run(call(&self.0.shared)).await,
        }
    }

    /// Sends a request and reads a bounded body; 5xx and 429 become [`HttpError::Unavailable`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), HttpError> {
        let request = request.build().map_err(|e| HttpError::Transport(format!("bad request: {}", transport(&e))))?;
        self.with_client(async move |client| {
            let response = answered(client, request).await?;
            Ok((response.status().as_u16(), read_capped(response).await?))
        })
        .await
    }

    async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.with_client(async move |client| exchange(client, request, true).await).await
    }

    /// `execute` without turning 200-status errors into 400 (`Shaped` reads them itself).
    async fn execute_raw(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.with_client(async move |client| exchange(client, request, false).await).await
    }
}

/// A pool with Tether's settings for upstream calls.
fn build(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // SSRF and token leakage: an upstream endpoint never gets to send Tether elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// The provider's answer to `request`, unless it is an outage: a transport failure, 429, or
/// 5xx (and anything above, which no working server sends).
async fn answered(client: &reqwest::Client, request: reqwest::Request) -> Result<reqwest::Response, HttpError> {
    let response = client.execute(request).await.map_err(|e| HttpError::Transport(transport(&e)))?;
    let status = response.status().as_u16();
    if status >= 500 || status == 429 {
        return Err(HttpError::Unavailable(status));
    }
    Ok(response)
}

async fn exchange(client: &reqwest::Client, request: HttpRequest, fix_errors: bool) -> Result<HttpResponse, HttpError> {
    let request = reqwest::Request::try_from(request).map_err(|e| HttpError::Transport(format!("bad request: {e}")))?;
    let response = answered(client, request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_capped(response).await?;
    // GitHub (and some others) answer token-endpoint errors with 200 and an `error`
    // member; RFC 6749 §5.2 says 400. Present them as what they are.
    let status = if fix_errors && status.is_success() && is_error_body(&body) {
        oauth2::http::StatusCode::BAD_REQUEST
    } else {
        status
    };
    let body = if status.is_client_error() { standard_error(status.as_u16(), body) } else { body };
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

impl<'c> oauth2::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// The token endpoint of a provider whose answers `shape` brings back to RFC 6749.
pub struct Shaped<'a> {
    pub http: &'a UpstreamHttp,
    pub shape: &'a super::shape::TokenShape,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Shaped<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, mut request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            if self.shape.is_plain() {
                return self.http.execute(request).await;
            }
            if let Some(body) = self.shape.request_body(request.body()) {
                *request.body_mut() = body;
                request.headers_mut().insert(
                    oauth2::http::header::CONTENT_TYPE,
                    oauth2::http::HeaderValue::from_static("application/json"),
                );
            }
            let response = self.http.execute_raw(request).await?;
            let (status, body) = self.shape.normalize(response.status().as_u16(), response.body());
            let mut out = HttpResponse::new(body);
            *out.status_mut() =
                oauth2::http::StatusCode::from_u16(status).unwrap_or(oauth2::http::StatusCode::BAD_GATEWAY);
            *out.headers_mut() = response.headers().clone();
            out.headers_mut()
                .insert(oauth2::http::header::CONTENT_TYPE, oauth2::http::HeaderValue::from_static("application/json"));
            if status >= 500 || status == 429 {
                return Err(HttpError::Unavailable(status));
            }
            Ok(out)
        })
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

/// A refusal whose JSON body says so in its own words (Figma: `{"error": true, "status": 400,
/// "message": ...}`) rewritten as RFC 6749 §5.2 says, so that it reads as the refusal it is and
/// not as an unreadable answer (which would keep a dead grant around as an outage).
fn standard_error(status: u16, body: Vec<u8>) -> Vec<u8> {
    let nonstandard = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.get("error") == Some(&serde_json::Value::Bool(true))))
        .unwrap_or(false);
    if !nonstandard {
        return body;
    }
    let error = if status == 401 { "invalid_client" } else { "invalid_grant" };
    serde_json::json!({ "error": error }).to_string().into_bytes()
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

#[cfg(test)]
mod tests {
    #[test]
    fn figma_shaped_refusals_read_as_refusals() {
        let figma = br#"{"error":true,"status":400,"message":"Invalid refresh token"}"#.to_vec();
        assert_eq!(super::standard_error(400, figma.clone()), br#"{"error":"invalid_grant"}"#.to_vec());
        assert_eq!(super::standard_error(401, figma), br#"{"error":"invalid_client"}"#.to_vec());
        let standard = br#"{"error":"invalid_grant"}"#.to_vec();
        assert_eq!(super::standard_error(400, standard.clone()), standard);
        assert_eq!(super::standard_error(400, b"<html>".to_vec()), b"<html>".to_vec());
    }
}
