//! nix32 decoding never panics, and every successful decode re-encodes to the input.
#![no_main]

use containix_core::store::nix32;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str)| {
    let (size, text) = input;
    let size = usize::from(size % 70);
    if let Ok(bytes) = nix32::decode(text, size) {
        assert_eq!(nix32::encode(&bytes), text);
    }
});
