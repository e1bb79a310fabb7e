//! Abuse limits at the edge: who the client is (its IP, believed from `X-Forwarded-For` only
//! when the connection comes from a trusted proxy) and how often it may call.
//!
//! The rate limiters live in each replica (GCRA, `governor`): the configured rates are per
//! replica. A shared counter would cost every request a store round trip, introspection
//! included. The registration caps, which must hold across replicas, are counted in the store.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

use crate::oauth::OAuthError;

/// Requests per period for one key; `None` means unlimited.
pub struct Limiter<K: std::hash::Hash + Eq + Clone> {
    inner: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new(count: u32, period: Duration) -> Self {
        let inner = NonZeroU32::new(count).and_then(|n| {
            // `count` per `period`, with a burst of the same size.
            Quota::with_period(period / n.get()).map(|q| governor::RateLimiter::keyed(q.allow_burst(n)))
        });
        Self { inner }
    }

    /// `Err(retry_after)` when `key` is over its rate.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else { return Ok(()) };
        limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys that are back to a full bucket, so memory follows the active clients.
    pub fn shrink(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Configured rates (0 = unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub register_per_minute: u32,
    pub authorize_per_minute: u32,
    pub token_per_minute: u32,
    pub introspect_per_second: u32,
    pub upstream_rejected_per_minute: u32,
}

pub struct Limits {
    trusted_proxies: Vec<IpNet>,
    pub register: Limiter<IpAddr>,
    pub authorize: Limiter<IpAddr>,
    pub token: Limiter<IpAddr>,
    /// Keyed by resource id: each MCP server has its own budget.
    pub introspect: Limiter<String>,
    /// Reports of refused upstream credentials, per resource id.
    pub upstream_rejected: Limiter<String>,
}

impl Limits {
    pub fn new(rates: Rates, trusted_proxies: Vec<IpNet>) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            trusted_proxies,
            register: Limiter::new(rates.register_per_minute, minute),
            authorize: Limiter::new(rates.authorize_per_minute, minute),
            token: Limiter::new(rates.token_per_minute, minute),
            introspect: Limiter::new(rates.introspect_per_second, Duration::from_secs(1)),
            upstream_rejected: Limiter::new(rates.upstream_rejected_per_minute, minute),
        }
    }

    pub fn shrink(&self) {
        self.register.shrink();
        self.authorize.shrink();
        self.token.shrink();
        self.introspect.shrink();
        self.upstream_rejected.shrink();
    }

    /// The client's address: the peer, unless the peer is a trusted proxy, in which case the
    /// nearest address in `X-Forwarded-For` that is not itself a trusted proxy. Headers from
    /// anyone else are ignored: a client cannot choose the address it is limited under.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        client_ip(peer, req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()), &self.trusted_proxies)
    }
}

/// The endpoints limited per client address.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Register,
    Authorize,
    Token,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Authorize => "authorize",
            Self::Token => "token",
        }
    }
}

/// Whole seconds to wait, rounded up (`Retry-After` takes integers).
/// An MCP server's call under `limiter` (keyed by its resource id), or the 429 that says when
/// to retry; `what` names the calls in the answer ("introspection requests").
pub fn per_resource(limiter: &Limiter<String>, resource: &str, what: &str) -> Result<(), crate::oauth::OAuthError> {
    limiter.check(&resource.to_owned()).map_err(|wait| {
        let secs = retry_secs(wait);
        tracing::info!(%resource, retry_after = secs, what, "rate limited");
        crate::oauth::OAuthError::rate_limited(format!("too many {what}; retry in {secs} s"), secs)
    })
}

pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Middleware: answers 429 with `Retry-After` before the handler runs when the client's
/// address is over `endpoint`'s rate; JSON for the API endpoints, a page for `/authorize`,
/// which a browser shows. Wrap it inside CORS, so browser clients can read the 429.
pub async fn throttle<B: MessageBody>(
    endpoint: Endpoint,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let verdict = req.app_data::<web::Data<super::AppState>>().and_then(|state| {
        let limits = &state.limits;
        let ip = limits.client_ip(req.request())?;
        let limiter = match endpoint {
            Endpoint::Register => &limits.register,
            Endpoint::Authorize => &limits.authorize,
            Endpoint::Token => &limits.token,
        };
        limiter.check(&ip).err().map(|wait| (ip, retry_secs(wait)))
    });
    let Some((ip, secs)) = verdict else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    tracing::info!(endpoint = endpoint.name(), client_ip = %ip, retry_after = secs, "rate limited");
    let mut response = match endpoint {
        Endpoint::Authorize => super::pages::error_page(
            crate::oauth::flow::PageStatus::TooManyRequests,
            "Too many authorization requests from your network. Please wait a moment and try again.",
        ),
        Endpoint::Register | Endpoint::Token => super::error::json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &OAuthError::rate_limited(format!("too many requests; retry in {secs} s"), secs),
        ),
    };
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    Ok(req.into_response(response).map_into_right_body())
}

/// Longest request target accepted (a CIMD `client_id`, `state` and PKCE fit in far less).
pub const MAX_URI: usize = 8 * 1024;
/// Most header bytes (names and values) accepted; browsers cap a cookie at 4 KiB.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Middleware over the whole application: a request target or header section larger than any
/// OAuth request needs is answered 414 or 431 before routing. The HTTP decoder bounds what
/// it buffers (and answers 431 itself past 96 headers), so nothing here grows with the input.
pub async fn request_size<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let uri = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    let headers: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    let refusal = if uri > MAX_URI {
        Some((StatusCode::URI_TOO_LONG, "the request URI is too long"))
    } else if headers > MAX_HEADER_BYTES {
        Some((StatusCode::from_u16(431).unwrap_or(StatusCode::BAD_REQUEST), "the request headers are too large"))
    } else {
        None
    };
    let Some((status, description)) = refusal else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    tracing::info!(uri_bytes = uri, header_bytes = headers, "oversized request refused");
    let response = super::error::json_error(status, &OAuthError::invalid_request(description));
    Ok(req.into_response(response).map_into_right_body())
}

fn client_ip<'a>(peer: IpAddr, forwarded: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // Right to left: each hop appended the address it received the request from.
    let hops: Vec<IpAddr> = forwarded.flat_map(|h| h.split(',')).filter_map(|h| h.trim().parse().ok()).collect();
    Some(hops.iter().rev().find(|ip| !is_trusted(ip)).or(hops.first()).copied().unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let none = std::iter::empty();
        assert_eq!(client_ip(ip("1.2.3.4"), none, &trusted), Some(ip("1.2.3.4")));
        let spoof = ["6.6.6.6"];
        assert_eq!(
            client_ip(ip("1.2.3.4"), spoof.into_iter(), &trusted),
            Some(ip("1.2.3.4")),
            "not from a proxy: ignored"
        );
        let chain = ["6.6.6.6, 5.5.5.5, 10.0.0.7"];
        assert_eq!(
            client_ip(ip("10.0.0.9"), chain.into_iter(), &trusted),
            Some(ip("5.5.5.5")),
            "nearest untrusted hop"
        );
        let two_headers = ["6.6.6.6", "5.5.5.5"];
        assert_eq!(client_ip(ip("10.0.0.9"), two_headers.into_iter(), &trusted), Some(ip("5.5.5.5")));
        let junk = ["not-an-ip"];
        assert_eq!(client_ip(ip("10.0.0.9"), junk.into_iter(), &trusted), Some(ip("10.0.0.9")));
    }

    #[test]
    fn a_key_over_its_rate_is_told_when_to_retry() {
        let limiter: Limiter<u8> = Limiter::new(2, Duration::from_secs(60));
        assert!(limiter.check(&1).is_ok() && limiter.check(&1).is_ok());
        let retry = limiter.check(&1).unwrap_err();
        assert!(retry > Duration::from_secs(1) && retry <= Duration::from_secs(30), "{retry:?}");
        assert!(limiter.check(&2).is_ok(), "other keys are unaffected");
        let unlimited: Limiter<u8> = Limiter::new(0, Duration::from_secs(60));
        assert!((0..1000).all(|_| unlimited.check(&1).is_ok()));
    }
}
