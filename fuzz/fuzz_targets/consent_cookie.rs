//! The remembered-consent cookie, as a browser (or an attacker) sends it: reading never
//! panics, and nothing unsigned is believed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tether::crypto::seal::KeyRing;
use tether::oauth::consent::ConsentJar;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::parse(&KeyRing::generate_spec("k")).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(cookie) = std::str::from_utf8(data) else { return };
    let jar = ConsentJar::read(Some(cookie), ring(), 0);
    assert_eq!(jar.len(), 0, "an unsigned cookie was believed");
});
