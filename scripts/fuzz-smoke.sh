#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a short period ($1 seconds, default 10),
# starting from its committed seeds (fuzz/corpus/<target>, only read) and a scratch corpus
# under fuzz/work/. A crash fails the run and leaves the reproducer under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-10}"
# cargo-fuzz needs unstable compiler flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for target in $(cargo fuzz list); do
    printf 'fuzz: %s for %ss\n' "$target" "$seconds" >&2
    mkdir -p "work/$target" "corpus/$target"
    cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 2
done
