//! Access-token verification on untrusted tokens: never panics, never accepts a token Tether
//! did not sign (the fuzzer cannot forge ES256).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tether::crypto::signing::SigningKeys;

fn keys() -> &'static SigningKeys {
    static KEYS: OnceLock<SigningKeys> = OnceLock::new();
    KEYS.get_or_init(|| SigningKeys::parse(&SigningKeys::generate_spec("fuzz").unwrap()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let verified = keys().verify::<serde_json::Value>(token, "https://tether.example");
    assert!(verified.is_err(), "accepted a token nobody signed: {token}");
});
