#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to build tcc, then builds tcc in release.
#
# Idempotent: it installs only what is missing, so running it again costs one
# incremental `cargo build`. Run it as root (apt-get needs it) from anywhere:
#
#     bash scripts/setup.sh
#
# What it needs and does:
#   - a Rust toolchain (cargo) on the machine: checked, never installed here;
#   - LLVM 19 for the coming LLVM backend: apt packages llvm-19-dev,
#     libpolly-19-dev, libzstd-dev and zlib1g-dev, installed after
#     `apt-get update` only when /usr/lib/llvm-19 is missing;
#   - then `cargo build --release -p tcc-cli`, which leaves ./target/release/tcc.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

# rustup installs cargo under ~/.cargo/bin, which a non-login shell may not
# have on its PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 \
  || die "cargo was not found. tcc needs a Rust toolchain (1.80 or newer, with rustfmt and clippy); install one with rustup and put ~/.cargo/bin on PATH."
say "using $(cargo --version)"

if [ -d /usr/lib/llvm-19 ]; then
  say "LLVM 19 is installed (/usr/lib/llvm-19)"
else
  [ "$(id -u)" -eq 0 ] || die "LLVM 19 is missing and installing it needs root: run this script as root, or install llvm-19-dev libpolly-19-dev libzstd-dev zlib1g-dev yourself."
  command -v apt-get >/dev/null 2>&1 || die "LLVM 19 is missing and apt-get is not available: this script expects Debian 12."
  say "installing LLVM 19 with apt-get"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    llvm-19-dev libpolly-19-dev libzstd-dev zlib1g-dev
fi

say "building tcc (release)"
cargo build --release -p tcc-cli
say "done: $root/target/release/tcc"
