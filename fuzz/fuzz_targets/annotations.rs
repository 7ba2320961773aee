//! Arbitrary annotation maps never panic the parser, and whatever parses round-trips through
//! its canonical annotations.
#![no_main]

use std::collections::BTreeMap;

use containix_core::request::annotations::PodAnnotations;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|pairs: Vec<(String, String)>| {
    // Steer half the keys into the containix.dev/ namespace so the parser sees them.
    let annotations: BTreeMap<String, String> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| {
            if i % 2 == 0 { (format!("containix.dev/{key}"), value) } else { (key, value) }
        })
        .collect();
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
