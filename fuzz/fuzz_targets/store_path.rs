//! Store path parsing never panics, and whatever parses prints back to the same text.
#![no_main]

use containix_core::store::store_path::StorePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(path) = StorePath::parse(text) {
        assert_eq!(path.to_string(), text);
        assert_eq!(StorePath::from_base_name(path.base_name()).unwrap(), path);
        let (prefix, rest) = StorePath::parse_prefix(text).unwrap();
        assert_eq!((prefix, rest), (path, ""));
    }
    if let Ok((path, rest)) = StorePath::parse_prefix(text) {
        assert_eq!(format!("{path}{rest}"), text);
    }
});
