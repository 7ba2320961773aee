//! Arbitrary bytes as Nix daemon replies: every decoder must return (an error or a value)
//! without panicking, and allocate only within its caps.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use containix_core::store::daemon::handshake::handshake;
use containix_core::store::daemon::ops::{read_build_results, read_missing, read_path_info, read_roots};
use containix_core::store::daemon::stderr::{ProgressTracker, read_stderr};
use containix_core::store::daemon::wire::WireReader;
use containix_core::store::daemon::ProtocolVersion;
use containix_core::store::store_path::StorePath;
use libfuzzer_sys::fuzz_target;

/// Polls a future once: reading from a byte slice and writing to a Vec never wait.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("in-memory I/O never waits"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    // The high bits pick the protocol version (1.21 ..= 1.52), the low bits the decoder.
    let version = ProtocolVersion::new(1, 21 + (selector >> 3));
    let mut reader = WireReader::new(bytes);
    let (mut progress, _receiver) = ProgressTracker::new();
    let path = StorePath::parse("/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-fuzz").unwrap();
    match selector & 7 {
        0 => {
            let mut sent = Vec::new();
            let _ = ready(handshake(&mut reader, &mut sent, &mut progress));
        }
        1 => {
            let _ = ready(read_stderr(&mut reader, version, &mut progress));
        }
        2 => {
            let _ = ready(read_path_info(&mut reader, version, &path));
        }
        3 => {
            let _ = ready(read_build_results(&mut reader, version));
        }
        4 => {
            let _ = ready(read_missing(&mut reader));
        }
        5 => {
            let _ = ready(read_roots(&mut reader));
        }
        _ => {
            // A whole reply: stderr messages, then a path info.
            if ready(read_stderr(&mut reader, version, &mut progress)).is_ok() {
                let _ = ready(read_path_info(&mut reader, version, &path));
            }
        }
    }
});
