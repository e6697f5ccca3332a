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
#   - then `cargo build --release -p tcc-cli`, which leaves ./target/release/tcc;
#   - then the Python environment ./.venv (python3's venv; Debian's python3-venv is
#     installed if venv cannot make one): the tcc package (`pip install ./python`, built
#     with maturin), the compiler linked into its bin/ (so `tcc.compile` and a shell
#     with the environment activated find it), and what the Python tests and examples
#     use: numpy, onnxruntime, pytest, ray[serve] and requests. TCC_NO_PYTHON=1 skips it.
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
say "built $root/target/release/tcc"

if [ "${TCC_NO_PYTHON:-0}" = 1 ]; then
  say "TCC_NO_PYTHON=1: no Python environment"
  exit 0
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  command -v python3 >/dev/null 2>&1 || {
    [ "$(id -u)" -eq 0 ] || die "python3 is missing and installing it needs root"
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3
  }
  say "making the Python environment $venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 keeps venv's pip bootstrap (ensurepip) in python3-venv.
    rm -rf "$venv"
    [ "$(id -u)" -eq 0 ] || die "python3 cannot make a venv (install python3-venv) and installing it needs root"
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
    python3 -m venv "$venv"
  fi
fi
say "installing the Python packages into $venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet numpy onnxruntime pytest "ray[serve]" requests
# The package from this checkout, rebuilt each time (cargo makes it an incremental build).
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$root/python"
ln -sf "$root/target/release/tcc" "$venv/bin/tcc"
"$venv/bin/python" -c "import tcc; print('setup: tcc', tcc.__version__, 'for Python, compiler', tcc.compiler())" >&2
say "done: $root/target/release/tcc, and the Python environment $venv (source $venv/bin/activate)"
