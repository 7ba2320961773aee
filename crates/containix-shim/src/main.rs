//! `containerd-shim-containix-v1`: the containerd shim for containix pods.

use clap::Parser;

/// containerd shim v2 that runs Nix closures as containers and delegates to runc.
#[derive(Parser)]
#[command(name = "containerd-shim-containix-v1", version = containix_core::VERSION)]
struct Args {}

fn main() {
    let _ = Args::parse();
}
