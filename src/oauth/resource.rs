//! Resource indicators (RFC 8707): normalizing the URIs clients send.

use url::Url;

/// The comparison form of a resource URI.
///
/// Clients disagree on the exact string: `https://h` vs `https://h/` (URL libraries add the
/// slash), upper-case hosts, default ports, and query parameters some clients append. Tether
/// compares scheme, host, port and path only: lower-case scheme and host, default port
/// dropped, a bare `/` path treated as empty, query and fragment ignored.
pub fn normalize(uri: &str) -> Option<String> {
    let url = Url::parse(uri.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return None;
    }
    let host = url.host_str()?;
    let mut out = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    if url.path() != "/" {
        out.push_str(url.path());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn treats_equivalent_spellings_alike() {
        let canonical = normalize("https://mcp.example.com/mcp").unwrap();
        for alias in [
            "https://mcp.example.com/mcp",
            "HTTPS://MCP.Example.com/mcp",
            "https://mcp.example.com:443/mcp",
            "https://mcp.example.com/mcp?session=1",
            "https://mcp.example.com/mcp#x",
        ] {
            assert_eq!(normalize(alias).unwrap(), canonical, "{alias}");
        }
        assert_eq!(normalize("https://h").unwrap(), normalize("https://h/").unwrap());
        assert_eq!(normalize("http://127.0.0.1:9000/mcp").unwrap(), "http://127.0.0.1:9000/mcp");
    }

    #[test]
    fn keeps_paths_distinct() {
        assert_ne!(normalize("https://h/mcp"), normalize("https://h/mcp/"));
        assert_ne!(normalize("https://h/a"), normalize("https://h/b"));
        assert_ne!(normalize("https://h/mcp"), normalize("http://h/mcp"));
    }

    #[test]
    fn refuses_what_is_not_an_http_uri() {
        for bad in ["", "mcp", "/mcp", "urn:x:y", "ftp://h/x", "mailto:a@b"] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
