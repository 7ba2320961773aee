#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 machine as root: installs what it needs, stands
# up a private node (nix-daemon, containerd with CRI, runc), builds the example flake in
# examples/hello offline and runs its program in a pod whose only content is the example's
# closure. Prints the program's output; leaves no containerd, mount or temp dir behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-node.sh
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
cargo build --quiet --locked --workspace --bins
exec target/debug/containix-example
