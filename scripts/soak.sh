#!/usr/bin/env bash
# The soak: N create/delete cycles (default 100) through containerd's CRI on a real test node
# (containix pods over several closures, passthrough sidecars, CSI volumes), then a table of
# failures, left-overs, and the RSS and open fds of every long-lived process. Fails unless every
# cycle succeeded, nothing was left and no long-lived process grew 5% or more in RSS.
# Needs root and the workspace's binaries (`cargo build --workspace --bins`).
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-100}"
CONTAINIX_SOAK_CYCLES="$cycles" cargo test -p containix-tests --test soak --locked -- \
    --ignored --nocapture --test-threads=1
