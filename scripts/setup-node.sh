#!/usr/bin/env bash
# Installs what containix's tests, benchmarks and example need on a Debian 12 machine, as root:
# Nix (daemon protocol 1.34), containerd with its CRI plugin, runc, a static busybox (the offline
# builder of the example and fixture flakes), a Rust toolchain and cargo-fuzz.
# Idempotent: a second run installs nothing and takes a second.
set -euo pipefail

packages=(nix-bin containerd runc busybox-static ca-certificates git util-linux procps iproute2)

log() { printf 'setup-node: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs Debian packages and later starts nix-daemon and containerd)"
    exit 1
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's nix-bin ships a systemd unit; without systemd as PID 1 the harness starts the daemon.
# The build users the daemon needs come with the package (group nixbld).
getent group nixbld >/dev/null || { log "group nixbld is missing after installing nix-bin"; exit 1; }

# Rust: the workspace needs edition 2024 (Rust >= 1.88). Debian 12's cargo is too old, so use rustup's.
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if ! command -v cargo >/dev/null 2>&1; then
    log "no cargo on PATH: installing a minimal Rust toolchain with rustup"
    command -v curl >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends curl >/dev/null
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    . "$HOME/.cargo/env"
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz
fi
log "node packages and toolchain ready"
