#!/usr/bin/env bash
# Builds every image the manifests in deploy/ name that this repository builds, offline, as OCI
# archives that `ctr images import` takes, named exactly as the manifests name them:
#
#   OUTDIR/containix-csi.oci.tar    ghcr.io/containix/containix-csi:<version>  (deploy/csi/)
#   OUTDIR/containix.oci.tar        ghcr.io/containix/containix:<version>      (deploy/installer/)
#   OUTDIR/containix-empty.oci.tar  containix/empty:1.0.0                      (what pods name)
#
# Each image holds the cargo-built programs and exactly the shared libraries they load, no
# distribution and no Nix-built layer. The CSI sidecars are upstream images and not built here.
#
# Usage: scripts/build-images.sh [--release | --bin-dir DIR] OUTDIR
#   (default)       programs from a dev build (`cargo build --workspace --bins`, what CI has)
#   --release       programs from `cargo build --release` (what a cluster should run), the
#                   shim linked statically
#   --bin-dir DIR   programs already built in DIR; cargo is not run
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."

# A path as the caller meant it, from the repository root this script runs in.
from_caller() {
  case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$caller" "$1" ;; esac
}

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

profile=dev
bin_dir=
while [ $# -gt 1 ]; do
  case "$1" in
    --release) profile=release; shift ;;
    --bin-dir) bin_dir="$(from_caller "$2")"; shift 2 ;;
    *) usage ;;
  esac
done
[ $# -eq 1 ] || usage
case "$1" in -*) usage ;; esac
out_dir="$(from_caller "$1")"

if [ -z "$bin_dir" ]; then
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if [ "$profile" = release ]; then
    cargo build --quiet --locked --release --bins -p containix-cli -p containix-csi
    # The shim is linked statically (a static PIE): the installer copies it onto hosts whose
    # libc may be older than this machine's, and a pod's shim then maps no shared library
    # (0.45x runc-v2's resident memory per pod instead of 0.52x; benches/README.md). The
    # explicit --target keeps the flags off build scripts and proc macros.
    host="$(rustc -vV | sed -n 's/^host: //p')"
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --locked --release \
      --target "$host" -p containix-shim
    bin_dir="$PWD/target/release-images"
    mkdir -p "$bin_dir"
    for program in containix containix-csi; do
      cp -f "target/release/$program" "$bin_dir/"
    done
    cp -f "target/$host/release/containerd-shim-containix-v1" "$bin_dir/"
  else
    # The same build as scripts/test.sh's, so a built workspace is reused as it is.
    cargo build --quiet --locked --workspace --bins
    bin_dir="$PWD/target/debug"
  fi
fi

exec "$bin_dir/containix" image build --bin-dir "$bin_dir" --out-dir "$out_dir"
