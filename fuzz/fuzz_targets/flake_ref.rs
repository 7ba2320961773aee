//! Any text that parses as a flake reference or installable prints to a form that parses back
//! to the same value, and printing is stable.
#![no_main]

use containix_core::request::flake_ref::{FlakeInstallable, FlakeRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(flake) = FlakeRef::parse(text) {
        let printed = flake.to_string();
        assert!(!printed.starts_with('-'));
        let reparsed = FlakeRef::parse(&printed).expect("printed flake ref parses");
        assert_eq!(reparsed, flake);
        assert_eq!(reparsed.to_string(), printed);
    }
    if let Ok(installable) = FlakeInstallable::parse(text) {
        let printed = installable.to_string();
        let reparsed = FlakeInstallable::parse(&printed).expect("printed installable parses");
        assert_eq!(reparsed, installable);
    }
});
