//! `containix`: resolve, inspect and run Nix closures as OCI containers.

use clap::Parser;

/// Run Nix closures as containers, without container images.
#[derive(Parser)]
#[command(name = "containix", version = containix_core::VERSION)]
struct Args {}

fn main() {
    let _ = Args::parse();
}
