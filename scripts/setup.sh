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
#   - LLVM 19 for the backend (apt packages llvm-19-dev, libpolly-19-dev,
#     libzstd-dev, zlib1g-dev), gcc, libc6-dev and binutils (to link and
#     inspect model libraries): each installed after `apt-get update` only if
#     dpkg does not have it;
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

# LLVM 19 for the backend, a C toolchain and binutils to link and inspect
# model libraries.
packages=(llvm-19-dev libpolly-19-dev libzstd-dev zlib1g-dev gcc libc6-dev binutils valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "system packages are installed (LLVM 19 at /usr/lib/llvm-19)"
else
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}) and installing them needs root: run this script as root, or install them yourself."
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and apt-get is not available: this script expects Debian 12."
  say "installing ${missing[*]} with apt-get"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
[ -x /usr/lib/llvm-19/bin/llvm-config ] || die "LLVM 19 was installed but /usr/lib/llvm-19/bin/llvm-config is missing"

say "building tcc (release)"
cargo build --release -p tcc-cli
say "done: $root/target/release/tcc"
