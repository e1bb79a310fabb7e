//! Fetching Client ID Metadata Documents without becoming an SSRF proxy.
//!
//! The URL comes from whoever sends an authorization request. Tether fetches it over https
//! only, resolves the name itself and connects only to the addresses it checked (no private,
//! loopback, link-local or metadata address; no DNS rebinding between check and connect), never
//! follows redirects, and bounds time and size. What the document says is judged by
//! `oauth::documents`.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

pub mod address;

pub use address::AddressPolicy;

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub timeout: Duration,
    pub max_bytes: usize,
    pub policy: AddressPolicy,
    /// Extra trusted roots (PEM), merged with the system's.
    pub extra_roots_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{0} is not a public address")]
    Forbidden(IpAddr),
    #[error("cannot resolve the host")]
    Unresolvable,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out")]
    Timeout,
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answered a redirect (HTTP {0}); redirects are not followed")]
    Redirect(u16),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
}

impl FetchError {
    /// A failure that says nothing about the document (RFC 5861 `stale-if-error` cases).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout | Self::Unresolvable => true,
            Self::Status(code) => *code >= 500 || *code == 429,
            Self::Forbidden(_) | Self::Redirect(_) | Self::TooLarge(_) => false,
        }
    }
}

/// What the `Cache-Control` (RFC 9111) of a response allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// `max-age` minus `Age`.
    pub max_age: Option<u64>,
    pub no_store: bool,
    pub no_cache: bool,
    /// RFC 5861.
    pub stale_if_error: Option<u64>,
}

impl CacheDirectives {
    pub fn parse(cache_control: Option<&str>, age: Option<&str>) -> Self {
        let mut out = Self::default();
        for directive in cache_control.unwrap_or("").split(',').map(|d| d.trim().to_ascii_lowercase()) {
            let (name, value) = directive.split_once('=').map_or((directive.as_str(), None), |(n, v)| (n, Some(v)));
            let seconds = || value.and_then(|v| v.trim_matches('"').parse::<u64>().ok());
            match name {
                "max-age" => out.max_age = seconds(),
                "no-store" => out.no_store = true,
                "no-cache" | "private" => out.no_cache = name == "no-cache" || out.no_cache,
                "stale-if-error" => out.stale_if_error = seconds(),
                _ => {}
            }
        }
        let age = age.and_then(|a| a.trim().parse::<u64>().ok()).unwrap_or(0);
        out.max_age = out.max_age.map(|m| m.saturating_sub(age));
        out
    }
}

#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub cache: CacheDirectives,
}

/// Resolves names itself and hands the connector only addresses the policy permits.
#[derive(Debug)]
struct CheckedResolver {
    policy: AddressPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is not a public address")]
struct ForbiddenAddress(IpAddr);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Every answer must pass: a name that also resolves internally is refused outright.
            if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
                return Err(Box::new(ForbiddenAddress(bad.ip())) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    config: FetchConfig,
    /// Where the pool's connections live (see `crate::home`).
    home: crate::home::Home,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .no_proxy()
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver { policy: config.policy.clone() }));
        if let Some(pem) = &config.extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA file: {e}"))?;
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder.build().map_err(|e| format!("cannot build the document client: {e}"))?;
        Ok(Self { http, config, home: crate::home::Home::here() })
    }

    pub async fn fetch(&self, url: &Url) -> Result<Fetched, FetchError> {
        self.home.run(self.fetch_here(url)).await
    }

    async fn fetch_here(&self, url: &Url) -> Result<Fetched, FetchError> {
        // IP-literal hosts are not resolved, so the policy is applied to them here.
        if let Some(ip) = url.host().and_then(|h| match h {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }) && !self.config.policy.permits(ip)
        {
            return Err(FetchError::Forbidden(ip));
        }
        let response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let cache = CacheDirectives::parse(
            header(reqwest::header::CACHE_CONTROL).as_deref(),
            header(reqwest::header::AGE).as_deref(),
        );
        if response.content_length().is_some_and(|len| len > self.config.max_bytes as u64) {
            return Err(FetchError::TooLarge(self.config.max_bytes));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > self.config.max_bytes {
                return Err(FetchError::TooLarge(self.config.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, cache })
    }
}

fn classify(e: &reqwest::Error) -> FetchError {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(ForbiddenAddress(ip)) = s.downcast_ref::<ForbiddenAddress>() {
            return FetchError::Forbidden(*ip);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::NotFound
        {
            return FetchError::Unresolvable;
        }
        source = s.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Unreachable(if e.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cache_control_like_rfc_9111_and_5861() {
        let d = CacheDirectives::parse(Some("public, max-age=600, stale-if-error=86400"), Some("100"));
        assert_eq!(
            d,
            CacheDirectives { max_age: Some(500), no_store: false, no_cache: false, stale_if_error: Some(86400) }
        );
        assert!(CacheDirectives::parse(Some("no-store"), None).no_store);
        assert!(CacheDirectives::parse(Some("No-Cache"), None).no_cache);
        assert_eq!(CacheDirectives::parse(None, None), CacheDirectives::default());
        assert_eq!(CacheDirectives::parse(Some("max-age=\"60\""), None).max_age, Some(60));
        assert_eq!(CacheDirectives::parse(Some("max-age=abc"), None).max_age, None);
    }

    #[test]
    fn transient_failures_allow_a_stale_copy_and_refusals_do_not() {
        assert!(FetchError::Status(503).is_transient());
        assert!(FetchError::Timeout.is_transient());
        assert!(!FetchError::Status(404).is_transient());
        assert!(!FetchError::Forbidden("127.0.0.1".parse().unwrap()).is_transient());
        assert!(!FetchError::Redirect(302).is_transient());
    }
}
