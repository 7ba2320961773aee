//! `containix-csi`: CSI node plugin publishing Nix closures as ephemeral volumes.

use clap::Parser;

/// CSI node plugin that offers a Nix closure as an ephemeral inline volume.
#[derive(Parser)]
#[command(name = "containix-csi", version = containix_core::VERSION)]
struct Args {}

fn main() {
    let _ = Args::parse();
}
