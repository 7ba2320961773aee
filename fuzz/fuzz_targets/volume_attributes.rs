//! A CSI volume's attributes (its `volume_context`, written by any pod author in an inline
//! volume) never panic the parser or the policy check. Input: `key=value` lines.
#![no_main]

use containix_core::request::policy::node_policy::NodePolicy;
use containix_core::request::volume_attributes::VolumeAttributes;
use containix_fuzz::key_value_lines;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(volume) = VolumeAttributes::parse(&key_value_lines(text)) {
        let _ = volume.pod.qualified_name();
        let _ = volume.source_attribute();
        let _ = volume.check_policy(&NodePolicy::default());
    }
});
