//! Redirect URIs: which may be registered, and when a presented one matches a registered one.

use std::net::IpAddr;

use url::{Host, Url};

/// Schemes that can run code or read local data when navigated to; never a redirect target.
const DANGEROUS_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "blob", "about", "filesystem"];

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("`{0}` is not an absolute URI")]
    NotAbsolute(String),
    #[error("`{0}` has a fragment; RFC 6749 §3.1.2 forbids one")]
    Fragment(String),
    #[error("`{0}` uses http on a host that is not loopback; use https")]
    InsecureHttp(String),
    #[error("`{0}` uses a scheme that cannot be a redirect target")]
    DangerousScheme(String),
    #[error("`{0}` is not https or loopback http, which a web application requires")]
    WebNeedsHttps(String),
    #[error("a redirect URI must not contain spaces or control characters")]
    ControlCharacters,
}

/// URL parsers drop tabs and line breaks silently; a URI containing any is refused instead,
/// so that the string compared is the string used.
fn has_control_or_space(uri: &str) -> bool {
    uri.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Checks a redirect URI at registration.
///
/// MCP (Communication Security): redirect URIs MUST be localhost or HTTPS; RFC 8252 §7.1 also
/// allows private-use schemes for native apps, which real clients use (`cursor://...`).
pub fn validate_registered(uri: &str, web_application: bool) -> Result<(), RedirectUriError> {
    if has_control_or_space(uri) {
        return Err(RedirectUriError::ControlCharacters);
    }
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute(uri.to_owned()))?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment(uri.to_owned()));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "https" => Err(RedirectUriError::NotAbsolute(uri.to_owned())),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(RedirectUriError::InsecureHttp(uri.to_owned())),
        scheme if DANGEROUS_SCHEMES.contains(&scheme) => Err(RedirectUriError::DangerousScheme(uri.to_owned())),
        _ if web_application => Err(RedirectUriError::WebNeedsHttps(uri.to_owned())),
        _ => Ok(()),
    }
}

/// Whether the redirect URI in an authorization request matches a registered one.
///
/// OAuth 2.1 §4.1.2.1 requires exact string matching, with one exception from RFC 8252 §7.3:
/// for loopback redirects the port is chosen at run time, so any port matches. (Real clients
/// register `http://127.0.0.1/` and use an ephemeral port; `localhost` is treated alike.)
pub fn matches(registered: &str, presented: &str) -> bool {
    if has_control_or_space(presented) {
        return false;
    }
    if registered == presented {
        return true;
    }
    let (Ok(reg), Ok(pres)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    reg.scheme() == "http"
        && pres.scheme() == "http"
        && is_loopback(&reg)
        && reg.host() == pres.host()
        && reg.username().is_empty()
        && pres.username().is_empty()
        && reg.password().is_none()
        && pres.password().is_none()
        && reg.path() == pres.path()
        && reg.query() == pres.query()
        && pres.fragment().is_none()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a redirect URI goes to this computer (http on a loopback host).
pub fn is_loopback_uri(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| u.scheme() == "http" && is_loopback(&u))
}

/// The host a redirect goes to, shown on the consent page so the user sees where the code
/// will be sent (`cursor://anysphere.cursor-mcp/...` shows `anysphere.cursor-mcp`).
pub fn display_host(uri: &str) -> String {
    Url::parse(uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(h) => h.to_owned(),
            None => format!("{}:", u.scheme()),
        })
        .unwrap_or_else(|| uri.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_real_clients_register() {
        for uri in [
            "https://claude.ai/api/mcp/auth_callback",
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/",
            "http://localhost:8787/callback",
            "http://[::1]:9000/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "com.example.app:/oauth2redirect",
        ] {
            validate_registered(uri, false).unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
    }

    #[test]
    fn refuses_unsafe_redirect_uris() {
        for uri in [
            "http://example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "https://example.com/cb#frag",
            "/relative/path",
            "",
        ] {
            assert!(validate_registered(uri, false).is_err(), "{uri} was accepted");
        }
        assert!(validate_registered("cursor://x/cb", true).is_err());
        assert!(validate_registered("https://app.example/cb", true).is_ok());
    }

    #[test]
    fn matches_exactly_except_the_loopback_port() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches("https://a.example/cb", "https://a.example:8443/cb"));
        assert!(!matches("https://a.example/cb", "https://A.example/cb?x=1"));
        assert!(matches("http://127.0.0.1/", "http://127.0.0.1:54321/"));
        assert!(matches("http://127.0.0.1:33418/", "http://127.0.0.1:40000/"));
        assert!(matches("http://localhost/callback", "http://localhost:1234/callback"));
        assert!(matches("http://[::1]/cb", "http://[::1]:5/cb"));
        assert!(!matches("http://127.0.0.1/", "http://127.0.0.1:5/other"));
        assert!(!matches("http://localhost/cb", "http://127.0.0.1:5/cb"));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/call\nback"), "parsers drop the line break");
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/callback\t"));
        assert_eq!(
            validate_registered("https://app.example/cb\r\nSet-Cookie: x=1", false),
            Err(RedirectUriError::ControlCharacters)
        );
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:5/cb?x=1"));
        assert!(!matches("http://127.0.0.1/cb", "http://user@127.0.0.1:5/cb"));
        assert!(!matches("cursor://a/cb", "cursor://a/cb2"));
    }

    #[test]
    fn shows_the_host_a_code_goes_to() {
        assert_eq!(display_host("https://claude.ai/api/mcp/auth_callback"), "claude.ai");
        assert_eq!(display_host("cursor://anysphere.cursor-mcp/oauth/callback"), "anysphere.cursor-mcp");
        assert_eq!(display_host("com.example.app:/cb"), "com.example.app:");
    }
}
