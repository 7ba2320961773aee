#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a short period ($1 seconds, default 15).
# A crash fails the run and leaves the reproducer under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-15}"
# cargo-fuzz needs unstable compiler flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for target in $(cargo fuzz list); do
    printf 'fuzz: %s for %ss\n' "$target" "$seconds" >&2
    cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 2
done
