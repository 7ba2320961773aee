//! A QueryPathInfo reply (stderr, then the validity flag and the path info): never a panic,
//! and whatever decodes is a path info of the path asked for with valid references. The first
//! byte picks the protocol version (1.21 + byte % 32).
#![no_main]

use containix_core::store::daemon::ProtocolVersion;
use containix_core::store::daemon::ops::read_path_info;
use containix_core::store::daemon::stderr::{ProgressTracker, read_stderr};
use containix_core::store::daemon::wire::WireReader;
use containix_core::store::store_path::StorePath;
use containix_fuzz::ready;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let version = ProtocolVersion::new(1, 21 + selector % 32);
    let path = StorePath::parse("/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-fuzz").unwrap();
    let mut reader = WireReader::new(bytes);
    let (mut progress, _receiver) = ProgressTracker::new();
    if ready(read_stderr(&mut reader, version, &mut progress)).is_err() {
        return;
    }
    if let Ok(Some(info)) = ready(read_path_info(&mut reader, version, &path)) {
        assert_eq!(info.path, path);
    }
});
