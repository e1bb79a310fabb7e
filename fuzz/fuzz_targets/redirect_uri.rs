//! Redirect URI registration and matching: `registered \n presented`. Matching is exact
//! except for the port of loopback http URIs, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::oauth::redirect::{matches, validate_registered};
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (registered, presented) = text.split_once('\n').unwrap_or((text, text));
    let _ = validate_registered(registered, false);
    let _ = validate_registered(presented, true);
    let clean = |s: &str| !s.chars().any(|c| c.is_control() || c.is_whitespace());
    if clean(registered) {
        assert!(matches(registered, registered), "a URI matches itself");
    }
    if matches(registered, presented) && registered != presented {
        // Only the loopback port may differ.
        let (r, p) = (Url::parse(registered).unwrap(), Url::parse(presented).unwrap());
        assert_eq!((r.scheme(), p.scheme()), ("http", "http"));
        assert_eq!(r.host(), p.host());
        assert_eq!((r.path(), r.query()), (p.path(), p.query()));
        assert!(p.username().is_empty() && p.password().is_none() && p.fragment().is_none());
        assert!(validate_registered(registered, false).is_err() || clean(presented));
    }
});
