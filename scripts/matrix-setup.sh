#!/usr/bin/env bash
# Prepares the newer node components the version matrix tests against, on a Debian 12 machine,
# as root, into a cache directory that later runs reuse:
#   containerd-1.7.24/  containerd 1.7.24 from Debian trixie, extracted in place (dpkg -x)
#   containerd-2.1.9/   containerd 2.1.9 from Debian sid, extracted in place
#   nix-2.26.3/root/    a Debian trixie root (debootstrap --variant=minbase) with nix-bin 2.26.3
#                       (daemon protocol 1.37); the testkit runs its nix-daemon chrooted there
# Both containerd builds link only libc and run here as they are, each with its own `ctr` and
# `containerd-shim-runc-v2` next to it. Nix 2.26 needs trixie's glibc, hence the root.
#
# The packages come from the machine's own Debian mirror through a private apt state under the
# cache directory: the machine's apt sources and pins are never changed.
#
# Idempotent: each component is built in a temporary directory and renamed into place when
# complete, so a second run finds everything and takes a second; an interrupted run leaves no
# half-made component. Prints the environment the matrix runs take (`KEY=VALUE` lines) on
# stdout. Usage: scripts/matrix-setup.sh [CACHE_DIR]   (default: $CONTAINIX_MATRIX_DIR, else
# /var/cache/containix-matrix)
set -euo pipefail

cache="${1:-${CONTAINIX_MATRIX_DIR:-/var/cache/containix-matrix}}"
containerd_17=1.7.24~ds1-6+deb13u1
containerd_21=2.1.9+ds1-5
nix_226=2.26.3
nix_root="$cache/nix-$nix_226/root"

log() { printf 'matrix-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it runs debootstrap and chroot)"
    exit 1
fi
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
nix_root="$cache/nix-$nix_226/root"
# One run at a time on one cache (two CI runs on one machine share it).
exec 9>"$cache/.lock"
flock 9
# What an interrupted run left half made (never through a mount debootstrap may have left).
for stale in "$cache"/.containerd-* "$cache"/nix-*/.root.*; do
    [ -e "$stale" ] || continue
    log "removing the unfinished $stale"
    rm -rf --one-file-system "$stale" || log "could not remove $stale entirely; remove it by hand"
done

# The machine's Debian mirror (the first URIs of its deb822 sources, else sources.list).
mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# apt-get with a private state that knows trixie and sid only.
apt_private() {
    apt-get -q -o APT::Sandbox::User=root \
        -o Dir::Etc::SourceList=/dev/null \
        -o Dir::Etc::SourceParts="$cache/apt/sources.list.d" \
        -o Dir::Etc::Preferences=/dev/null \
        -o Dir::Etc::PreferencesParts="$cache/apt/preferences.d" \
        -o Dir::State::Lists="$cache/apt/lists" \
        -o Dir::Cache="$cache/apt/cache" \
        -o Acquire::Languages=none \
        "$@"
}

apt_updated=no
apt_private_update() {
    [ "$apt_updated" = yes ] && return
    mkdir -p "$cache/apt/sources.list.d" "$cache/apt/preferences.d" \
        "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
    cat >"$cache/apt/sources.list.d/matrix.sources" <<EOF
Types: deb
URIs: $(mirror)
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    log "reading the trixie and sid package lists"
    apt_private update >/dev/null
    apt_updated=yes
}

# Downloads containerd=$2 and extracts it to $cache/containerd-$1.
containerd_build() {
    local version="$1" package_version="$2" dir="$cache/containerd-$1"
    if [ -x "$dir/usr/bin/containerd" ]; then
        return
    fi
    apt_private_update
    log "fetching containerd $package_version"
    local work
    work="$(mktemp -d "$cache/.containerd-$version.XXXXXX")"
    (cd "$work" && apt_private download "containerd=$package_version" >/dev/null)
    dpkg -x "$work"/containerd_*.deb "$work/tree"
    "$work/tree/usr/bin/containerd" --version >&2
    rm -rf "$dir"
    mv "$work/tree" "$dir"
    rm -rf "$work"
}

# Runs a command chrooted in root $1 with /proc and /dev mounted in a private mount namespace,
# so nothing stays mounted on the host afterwards.
in_root() {
    local root="$1"
    shift
    unshare --mount --propagation private -- \
        sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"' \
        "$root" "$@"
}

nix_root_build() {
    if [ -x "$nix_root/usr/bin/nix-daemon" ]; then
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    local work
    mkdir -p "$cache/nix-$nix_226"
    work="$(mktemp -d "$cache/nix-$nix_226/.root.XXXXXX")"
    log "bootstrapping a Debian trixie root for Nix $nix_226 (a few minutes, once)"
    debootstrap --variant=minbase trixie "$work" "$(mirror)" >"$work.log" 2>&1 || {
        tail -n 20 "$work.log" >&2
        exit 1
    }
    log "installing nix-bin $nix_226 in it"
    in_root "$work" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o APT::Sandbox::User=root install -y -qq --no-install-recommends \
        "nix-bin=$nix_226*" busybox-static >/dev/null
    in_root "$work" apt-get clean
    in_root "$work" nix-daemon --version >&2
    rm -rf "$nix_root" "$work.log"
    mv "$work" "$nix_root"
}

containerd_build 1.7.24 "$containerd_17"
containerd_build 2.1.9 "$containerd_21"
nix_root_build
# The package lists were only needed to fetch; a later version bump reads them anew.
rm -rf "$cache/apt"

log "ready in $cache"
cat <<EOF
CONTAINERD_1_7=$cache/containerd-1.7.24/usr/bin/containerd
CONTAINERD_2_1=$cache/containerd-2.1.9/usr/bin/containerd
NIX_2_26_ROOT=$nix_root
EOF
