//! The daemon's stderr channel (log lines, activities and their results, errors) as it
//! precedes every reply: never a panic, and memory only within the wire caps. The first byte
//! picks the protocol version (1.21 + byte % 32); the rest is what the daemon sent.
#![no_main]

use containix_core::store::daemon::ProtocolVersion;
use containix_core::store::daemon::stderr::{ProgressTracker, read_stderr};
use containix_core::store::daemon::wire::WireReader;
use containix_fuzz::ready;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let version = ProtocolVersion::new(1, 21 + selector % 32);
    let mut reader = WireReader::new(bytes);
    let (mut progress, receiver) = ProgressTracker::new();
    // A connection reads several replies' stderr in turn: keep reading while they parse.
    while ready(read_stderr(&mut reader, version, &mut progress)).is_ok() {
        let _ = receiver.borrow().clone();
        progress.reset();
    }
});
