//! Refresh token parsing on untrusted input: never panics, a parsed token spells back to the
//! same text, and nothing the fuzzer makes carries a MAC that verifies (it has no key).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tether::crypto::seal::KeyRing;
use tether::oauth::family;

fn keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing::parse(&KeyRing::generate_spec("fuzz")).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let Some(parsed) = family::parse(token) else { return };
    assert!(token.starts_with(&format!("trt.{}.{}.", parsed.grant_id, parsed.generation)), "{token}");
    assert!(!parsed.is_genuine(keys()), "a made-up token verified: {token}");
});
