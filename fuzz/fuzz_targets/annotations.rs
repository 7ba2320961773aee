//! Arbitrary annotation maps never panic the parser, and whatever parses round-trips through
//! its canonical annotations. Input: `key=value` lines (see `key_value_lines`).
#![no_main]

use containix_core::request::annotations::PodAnnotations;
use containix_fuzz::key_value_lines;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let annotations = key_value_lines(text);
    if let Ok(parsed) = PodAnnotations::parse(&annotations) {
        let canonical = parsed.to_annotations();
        let reparsed = PodAnnotations::parse(&canonical).expect("canonical annotations parse");
        assert_eq!(reparsed, parsed);
        assert_eq!(reparsed.to_annotations(), canonical);
        for container in parsed.overridden_containers() {
            let _ = parsed.request_for(container);
        }
        let _ = parsed.request_for("app");
    }
});
