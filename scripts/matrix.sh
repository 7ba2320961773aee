#!/usr/bin/env bash
# The version matrix: runs the end-to-end tests that depend on containerd's and Nix's versions
# against the newer versions nodes run, on top of the default run (scripts/test.sh runs
# everything against Debian 12's containerd 1.6.20 and Nix 2.8.0 first, then calls this):
#   containerd 1.7.24 and 2.1.9  the tests that run a containerd (containix pods through CRI and
#                                ctr, stock configs, node install, store views, the deploy
#                                images, doctor) with the machine's Nix 2.8
#   Nix 2.26.3 (protocol 1.38)   the daemon client and closure resolution tests, the Nix
#                                harness, and containix pods through CRI on containerd 2.1.9
# The tests are the same binaries; CONTAINIX_TEST_CONTAINERD and CONTAINIX_TEST_NIX_ROOT tell the
# testkit which build to run (crates/containix-testkit/src/containerd_build.rs and nix_root.rs).
# The Nix 2.26 run sees the root's store at /nix: it runs in a private mount namespace with
# ROOT/nix bind-mounted there, so the machine's /nix is never touched. The root's nix-daemon,
# which the testkit starts, keeps running afterwards like the machine's, for the next run (or a
# concurrent one) to reuse; `kill "$(cat ROOT/containix-testkit/daemon.pid)"` stops it.
#
# scripts/matrix-setup.sh fetches the builds once into a cache (default
# /var/cache/containix-matrix); later runs reuse it. Needs root and `cargo build --workspace
# --bins` first. Usage: scripts/matrix.sh [containerd-1.7|containerd-2.1|nix-2.26 ...]
# (default: all three).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

log() { printf 'matrix: %s\n' "$*" >&2; }

# A failed setup stops here (set -e), never falls back to the default versions.
setup="$(scripts/matrix-setup.sh)"
declare -A found=()
while IFS='=' read -r key value; do
    found[$key]="$value"
done <<<"$setup"
for key in CONTAINERD_1_7 CONTAINERD_2_1 NIX_2_26_ROOT; do
    if [ -z "${found[$key]:-}" ]; then
        log "scripts/matrix-setup.sh did not report $key"
        exit 1
    fi
done

# `--workspace` builds what `cargo test --workspace` in scripts/test.sh built (the same features),
# so nothing is compiled again.
# The tests that run a containerd: whole files, but for the fifty-pod view test (store views
# are containerd-independent; its smaller siblings cover them per version).
cri_tests=(--test containix_pod --test shim_ctr --test harness_containerd --test node_install
    --test store_views --test deploy_images --test cli_doctor)
cri_skips=(--skip fifty_pods_over_five_closures_share_five_views_and_leave_nothing)
# What depends on the Nix daemon's version: the protocol client, resolution (closures, builds,
# substitution, GC roots), the Nix harness, and containix pods through CRI. Not the store-wide
# garbage collection: the root's store is cached across runs, and another run on the machine
# may be using it.
nix_tests=(--test daemon_client --test resolve --test gc_roots --test harness_nix
    --test containix_pod)
nix_skips=(--skip full_garbage_collection_keeps_held_closures_and_collects_released_ones)

failed=()
run() {
    local name="$1"
    shift
    local started=$SECONDS
    printf '\n==> matrix: %s\n' "$name" >&2
    if "$@"; then
        log "$name passed in $((SECONDS - started)) s"
    else
        log "$name FAILED after $((SECONDS - started)) s"
        failed+=("$name")
    fi
}

containerd_run() {
    local binary="$1"
    CONTAINIX_TEST_CONTAINERD="$binary" \
        cargo test --workspace --locked --no-fail-fast "${cri_tests[@]}" -- "${cri_skips[@]}"
}

# Runs "$@" in a private mount namespace where /nix is the root's nix directory.
in_nix_root() {
    local root="$1"
    shift
    mkdir -p "$root/nix"
    unshare --mount --propagation private -- \
        sh -c 'mount --bind "$0/nix" /nix && exec "$@"' "$root" "$@"
}

nix_run() {
    local root="$1"
    # Every Nix client goes through the root's daemon (as root, Nix would otherwise open the
    # store's database directly).
    in_nix_root "$root" env NIX_REMOTE=daemon CONTAINIX_TEST_NIX_ROOT="$root" \
        CONTAINIX_TEST_CONTAINERD="${found[CONTAINERD_2_1]}" \
        cargo test --workspace --locked --no-fail-fast "${nix_tests[@]}" -- "${nix_skips[@]}"
}

selected=("$@")
[ "${#selected[@]}" -gt 0 ] || selected=(containerd-1.7 containerd-2.1 nix-2.26)
for entry in "${selected[@]}"; do
    case "$entry" in
        containerd-1.7) run "containerd 1.7.24" containerd_run "${found[CONTAINERD_1_7]}" ;;
        containerd-2.1) run "containerd 2.1.9" containerd_run "${found[CONTAINERD_2_1]}" ;;
        nix-2.26) run "Nix 2.26.3" nix_run "${found[NIX_2_26_ROOT]}" ;;
        *)
            log "unknown entry $entry (expected containerd-1.7, containerd-2.1 or nix-2.26)"
            exit 2
            ;;
    esac
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "failed: ${failed[*]}"
    exit 1
fi
log "all versions passed"
