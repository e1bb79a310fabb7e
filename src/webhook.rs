//! Signed webhooks: how Tether tells an MCP server that one of its connections settled.
//!
//! `POST <resource's connect_webhook>` with the event as a JSON body and
//! `Tether-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the
//! scheme Stripe and GitHub users know. The receiver recomputes the HMAC over the raw body
//! with its `connect_webhook_secret`, compares in constant time, and refuses timestamps far
//! from now (replays). [`verify`] does exactly that, for servers written in Rust.
//!
//! Delivery is best effort with retries (transport errors, 5xx, 429): the server can always
//! poll `GET /connect/{id}` or listen on Redis instead.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::clock::UnixTime;
use crate::home::Home;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "tether-signature";
/// Attempts per event, and the pause before each retry.
const RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// Where a resource's events go.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub secret: SecretString,
}

/// `t=...,v1=...` for `body` at `now`.
pub fn sign(secret: &str, body: &[u8], now: UnixTime) -> String {
    format!("t={now},v1={}", hex(&mac(secret, now, body)))
}

fn mac(secret: &str, at: UnixTime, body: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(at.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign().as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `header` signs `body` with `secret`, dated within `tolerance` seconds of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: UnixTime, tolerance: i64) -> bool {
    let mut at = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => at = t.parse::<UnixTime>().ok(),
            Some(("v1", v)) => signatures.push(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    let Some(at) = at.filter(|t| (now - t).abs() <= tolerance) else { return false };
    let expected = hex(&mac(secret, at, body));
    signatures.iter().any(|s| crate::crypto::hash::constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

/// Sends events, off the request that produced them.
#[derive(Debug, Clone)]
pub struct Sender {
    http: reqwest::Client,
    home: Home,
}

impl Sender {
    /// Call from the runtime that outlives the HTTP workers.
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Self { http, home: Home::here() })
    }

    /// Delivers `event` (JSON text) to `hook` in the background, retrying transient failures.
    pub fn send(&self, hook: &Webhook, kind: &str, event: String, now: UnixTime) {
        self.deliver(hook, kind, event, now, None);
    }

    /// Like [`Sender::send`], holding `permit` until the delivery ends (bounds how many are in
    /// flight).
    pub fn send_holding(
        &self,
        hook: &Webhook,
        kind: &str,
        event: String,
        now: UnixTime,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        self.deliver(hook, kind, event, now, Some(permit));
    }

    fn deliver(
        &self,
        hook: &Webhook,
        kind: &str,
        event: String,
        now: UnixTime,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let (http, hook, kind) = (self.http.clone(), hook.clone(), kind.to_owned());
        self.home.spawn(async move {
            let _permit = permit;
            let delivery = uuid::Uuid::new_v4().to_string();
            let signature = sign(hook.secret.expose_secret(), event.as_bytes(), now);
            for pause in std::iter::once(None).chain(RETRIES.into_iter().map(Some)) {
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
                let sent = http
                    .post(hook.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, &signature)
                    .header("tether-event", &kind)
                    .header("tether-delivery", &delivery)
                    .body(event.clone())
                    .send()
                    .await;
                match sent.map(|r| r.status()) {
                    Ok(status) if status.is_success() => {
                        tracing::info!(%kind, %delivery, "webhook delivered");
                        return;
                    }
                    Ok(status) if !(status.is_server_error() || status.as_u16() == 429) => {
                        tracing::warn!(%kind, %delivery, status = status.as_u16(), "webhook refused; not retried");
                        return;
                    }
                    Ok(status) => tracing::warn!(%kind, %delivery, status = status.as_u16(), "webhook failed"),
                    Err(e) => tracing::warn!(%kind, %delivery, error = %e, "webhook unreachable"),
                }
            }
            tracing::warn!(%kind, %delivery, "webhook given up; the server can poll GET /connect/{{id}}");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let header = sign("whsec", b"{\"a\":1}", 1_000);
        assert!(verify("whsec", &header, b"{\"a\":1}", 1_010, 300));
        assert!(!verify("whsec", &header, b"{\"a\":2}", 1_010, 300), "another body");
        assert!(!verify("other", &header, b"{\"a\":1}", 1_010, 300), "another secret");
        assert!(!verify("whsec", &header, b"{\"a\":1}", 2_000, 300), "too old: a replay");
        let forged = header.replace("t=1000", "t=1900");
        assert!(!verify("whsec", &forged, b"{\"a\":1}", 2_000, 300), "a moved timestamp breaks the MAC");
        assert!(!verify("whsec", "v1=00", b"{\"a\":1}", 1_000, 300), "no timestamp");
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // Reproducible by any language: HMAC-SHA256("key", "1.body").
        assert_eq!(sign("key", b"body", 1), "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5");
    }
}
