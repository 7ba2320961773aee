#!/usr/bin/env bash
# The whole containix suite, from a fresh clone on a fresh Debian 12 machine, as root:
# installs what it needs, checks formatting and lints, runs every unit, integration and
# end-to-end test against a real node (nix-daemon, containerd with CRI, runc), runs the
# version-dependent ones again against containerd 1.7 and 2.1 and Nix 2.26 (scripts/matrix.sh),
# soaks the node with 100 pod cycles, then gives every fuzz target a short smoke run. `.ci/run`
# calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-node.sh
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

# One build from scratch: incremental caches would only double the target directory on disk.
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*" >&2; }

step "format"
cargo fmt --all -- --check
step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "API docs (no broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked
step "binaries (the test node puts the shim on containerd's PATH)"
cargo build --workspace --bins --locked
step "tests"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
cargo test --workspace --locked 2>&1 | tee "$results"
step "version matrix: containerd 1.7.24 and 2.1.9, Nix 2.26.3"
scripts/matrix.sh 2>&1 | tee -a "$results"
step "the README's main job (the example flake's program in a pod)"
target/debug/containix-example
step "soak (create/delete cycles through CRI; nothing may leak or grow)"
scripts/soak.sh 100
step "fuzz smoke"
scripts/fuzz-smoke.sh "${CONTAINIX_FUZZ_SECONDS:-10}"

# One closing line for the whole suite, summed over every test binary above.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
