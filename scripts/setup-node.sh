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

# Debian's nix-bin ships neither the daemon's unit nor its build users: both come with
# nix-setup-systemd, a recommends that pulls in systemd, which does not run here (the harness starts
# the daemon itself). Create what that package's postinst would: the groups, ten build users, and
# the daemon socket's directory.
getent group nixbld >/dev/null || log "creating the nixbld group and its build users"
groupadd --force --system nix-users
groupadd --force --system nixbld
for n in $(seq 1 10); do
    id "nixbld$n" >/dev/null 2>&1 || useradd --system --comment "Nix build user $n" \
        --home-dir /var/empty --gid nixbld --groups nixbld --no-user-group \
        --shell /usr/sbin/nologin "nixbld$n"
done
install -d -m 0770 -g nix-users /nix/var/nix/daemon-socket
install -d -m 1777 /nix/var/nix/gcroots/per-user /nix/var/nix/profiles/per-user

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
