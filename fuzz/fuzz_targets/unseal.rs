//! Opening sealed records: arbitrary bytes never open, and any change to a genuine sealed
//! value (the input is XORed into it) is detected.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tether::crypto::seal::KeyRing;

fn ring() -> &'static (KeyRing, Vec<u8>) {
    static RING: OnceLock<(KeyRing, Vec<u8>)> = OnceLock::new();
    RING.get_or_init(|| {
        let ring =
            KeyRing::parse(&format!("{},{}", KeyRing::generate_spec("new"), KeyRing::generate_spec("old"))).unwrap();
        let sealed = ring.seal(b"{\"access_token\":\"upstream\"}", b"grant/1").unwrap();
        (ring, sealed)
    })
}

fuzz_target!(|data: &[u8]| {
    let (ring, sealed) = ring();
    let _ = KeyRing::sealed_with(data);
    assert!(ring.open(data, b"grant/1").is_err() || data == sealed.as_slice());
    let mut mutated = sealed.clone();
    let mut changed = false;
    for (byte, mask) in mutated.iter_mut().zip(data) {
        *byte ^= mask;
        changed |= *mask != 0;
    }
    if changed {
        assert!(ring.open(&mutated, b"grant/1").is_err(), "a modified sealed value opened");
    }
    assert!(ring.open(sealed, data).is_err() || data == b"grant/1", "opened under other associated data");
});
