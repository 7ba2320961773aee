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

# Whether rustc's linker folds identical code (`--icf=all`: lld, rustc's default linker on
# x86_64 Linux since Rust 1.90, and gold do; GNU ld does not): links an empty program with it.
linker_folds_code() {
  local probe
  probe="$(mktemp -d)"
  printf 'fn main() {}\n' >"$probe/main.rs"
  if rustc --edition 2021 -C link-arg=-Wl,--icf=all -o "$probe/main" "$probe/main.rs" \
    2>/dev/null; then
    rm -rf "$probe"
    return 0
  fi
  rm -rf "$probe"
  return 1
}

if [ -z "$bin_dir" ]; then
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if [ "$profile" = release ]; then
    cargo build --quiet --locked --release --bins -p containix-cli -p containix-csi
    # The shim is linked statically (a static PIE): the installer copies it onto hosts whose
    # libc may be older than this machine's, and a pod's shim then maps no shared library
    # (0.45x runc-v2's resident memory per pod instead of 0.52x; benches/README.md). Its
    # relative relocations are packed (DT_RELR, applied by the static startup code of glibc
    # >= 2.36): their 0.4 MiB table is read by every shim at start and stayed resident. The
    # linker folds identical functions where it can (lld, gold); the shim is then 0.39x.
    # The explicit --target keeps the flags off build scripts and proc macros.
    host="$(rustc -vV | sed -n 's/^host: //p')"
    shim_flags="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs"
    if linker_folds_code; then
      shim_flags="$shim_flags -C link-arg=-Wl,--icf=all"
    fi
    RUSTFLAGS="$shim_flags" cargo build --quiet --locked --release --target "$host" \
      -p containix-shim
    # A C library without DT_RELR support would leave the relocations unapplied: fail here,
    # not on the first pod.
    "target/$host/release/containerd-shim-containix-v1" -v >/dev/null || {
      echo "build-images: the static shim does not start (glibc >= 2.36 needed)" >&2
      exit 1
    }
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
