#!/usr/bin/env bash
# Fuzzes tcc's untrusted-input parsers with cargo-fuzz (libFuzzer and AddressSanitizer):
#
#     scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 60 s for each of the five targets
#
# The targets (fuzz/fuzz_targets/, described in ARCHITECTURE.md, Untrusted input):
#   onnx_decode   bytes -> ModelProto (and TensorProto) decoding in tcc-onnx
#   onnx_import   bytes -> the whole import into an IR graph, then the verifier
#   ir_text       text  -> tcc_ir::text::parse, and the print/parse round trip
#   npz           bytes -> tcc_npz::read_npz_from
#   infer         bytes -> a small graph of any ops built with `arbitrary`: tcc_ir::infer
#
# What it does:
#   1. installs cargo-fuzz $CARGO_FUZZ_VERSION with `cargo install --locked` if it is
#      missing, and g++ (libFuzzer is C++) with apt-get if no C++ compiler is found;
#   2. makes the seeds (not committed) under fuzz/seeds/TARGET, once: the shared
#      models and the tiny encoder made small, the ONNX node tests' models and a
#      sample of their input_*.pb, the IR text of some of them (`tcc compile X --emit
#      ir`, with ./target/release/tcc or $TCC, built if missing) and the small npz
#      references (fuzz/examples/seeds.rs says how);
#   3. builds the targets optimised with debug assertions and overflow checks, with
#      ASan; on a stable toolchain RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags
#      (stable rustc ships the ASan runtime for x86_64-unknown-linux-gnu);
#   4. runs each target for SECONDS, two at a time (the CI machine has 2 cores), on
#      fuzz/corpus/TARGET (what it finds, kept between runs) and its seeds, with
#      -rss_limit_mb=4096, a per-target -malloc_limit_mb (an allocation over it is a
#      finding: see below) and -timeout=30 (an input taking longer is a finding);
#   5. prints, per target, the executions (libFuzzer's final `#N DONE` and
#      stat::number_of_executed_units) and the outcome, and exits non-zero if any
#      target crashed, panicked, aborted, leaked past its limits or timed out. The
#      input that did is in fuzz/artifacts/TARGET/; reproduce it with
#      `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a TARGET fuzz/artifacts/TARGET/FILE`.
#
# The malloc limits follow tcc's budgets (ARCHITECTURE.md): onnx_import and npz may
# allocate one tensor or array of up to 4 GiB, so their limit is 4 GiB plus slack;
# decoding and parsing allocate in proportion to their input (plus the 1 GiB decoding
# overhead the importer allows), so theirs is 2 GiB.
#
# Logs are kept in fuzz/logs/. FUZZ_JOBS=1 runs the targets one after another.
set -euo pipefail

# The body is one block, read whole before it runs, so that editing this file
# while it runs does not change what a run does.
{
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CARGO_FUZZ_VERSION=0.13.1
all_targets=(onnx_decode onnx_import ir_text npz infer)
seconds="${1:-60}"
[ "$#" -gt 0 ] && shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")
jobs="${FUZZ_JOBS:-2}"
shared="$root/../shared"

say() { echo "fuzz: $*" >&2; }
die() { echo "fuzz: error: $*" >&2; exit 1; }

[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] || die "SECONDS must be a positive number, not '$seconds'"
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || die "unknown target '$t' (targets: ${all_targets[*]})"
done
[ -d "$shared/models" ] && [ -f "$shared/onnx-node-tests/node.tar.gz" ] \
  || die "$shared/models and $shared/onnx-node-tests/node.tar.gz are needed for the seeds"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS must be a positive number, not '$jobs'"

if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo was not found (see scripts/setup.sh)"

# 1. Tools.
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 \
    || die "a C++ compiler is needed to build libFuzzer: install g++"
  say "installing g++ with apt-get (libFuzzer is C++)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
# cargo-fuzz passes -Z flags (-Zsanitizer=address among them), which a stable rustc
# accepts with RUSTC_BOOTSTRAP=1; a nightly one needs nothing.
export RUSTC_BOOTSTRAP=1
host="$(rustc -vV | sed -n 's/^host: //p')"
sysroot="$(rustc --print sysroot)"
sanitizer=address
if ! ls "$sysroot/lib/rustlib/$host/lib/"librustc-*_rt.asan.a >/dev/null 2>&1; then
  say "warning: this toolchain has no AddressSanitizer runtime for $host; fuzzing without a sanitizer (Rust's own checks only)"
  sanitizer=none
fi
fuzz_flags=(-O -a -s "$sanitizer")

# 2. Seeds, made once (remove fuzz/seeds to make them again).
seeds="$root/fuzz/seeds"
if [ ! -f "$seeds/.done" ]; then
  say "making the seeds in $seeds"
  rm -rf "$seeds"
  cargo run --quiet --release --manifest-path fuzz/Cargo.toml --example seeds -- \
    "$shared" "$root/examples" "$seeds"
  tcc="${TCC:-$root/target/release/tcc}"
  if [ ! -x "$tcc" ]; then
    say "building tcc for the IR seeds"
    cargo build --quiet --release -p tcc-cli
    tcc="${CARGO_TARGET_DIR:-$root/target}/release/tcc"
  fi
  # `tcc compile --emit ir` of each model; every elided weight `@"name" : T` is renamed to
  # its type, `@"T" : T`, which the ir_text target makes as zeros.
  n=0
  for model in "$seeds"/ir_models/*.onnx; do
    base="$(basename "$model" .onnx)"
    if "$tcc" compile "$model" --emit ir > "$seeds/ir_text/$base.ir.tmp" 2>/dev/null; then
      sed -E 's/= const @"([^"\\]|\\.)*" : (.*)$/= const @"\2" : \2/' \
        "$seeds/ir_text/$base.ir.tmp" > "$seeds/ir_text/$base.ir"
      n=$((n + 1))
    fi
    rm -f "$seeds/ir_text/$base.ir.tmp"
  done
  rm -rf "$seeds/ir_models"
  say "seeds: ir_text: $n"
  touch "$seeds/.done"
fi

# 3. Build.
say "building the fuzz targets (${fuzz_flags[*]})"
cargo fuzz build "${fuzz_flags[@]}"

# 4. Run.
malloc_limit() {
  case "$1" in
    onnx_import | npz) echo 4352 ;;
    *) echo 2048 ;;
  esac
}
logs="$root/fuzz/logs"
mkdir -p "$logs"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

run_one() {
  local t="$1"
  local dict=()
  case "$t" in
    onnx_*) dict=("-dict=$seeds/onnx.dict") ;;
    ir_text | npz) dict=("-dict=fuzz/dict/$t.dict") ;;
  esac
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$scratch/$t"
  # allocator_may_return_null: a failed try_reserve is an error, as on a real system;
  # malloc_limit_mb still reports any allocation over the limit.
  TMPDIR="$scratch/$t" ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=0" \
    nice -n 19 cargo fuzz run "${fuzz_flags[@]}" "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -malloc_limit_mb="$(malloc_limit "$t")" \
    -timeout=30 -print_final_stats=1 "${dict[@]}" \
    > "$logs/$t.log" 2>&1
}

say "running ${targets[*]} for ${seconds} s each, $jobs at a time"
declare -A status
pending=("${targets[@]}")
while [ "${#pending[@]}" -gt 0 ]; do
  batch=("${pending[@]:0:$jobs}")
  pending=("${pending[@]:$jobs}")
  declare -A pids=()
  for t in "${batch[@]}"; do
    run_one "$t" &
    pids[$t]=$!
  done
  for t in "${batch[@]}"; do
    if wait "${pids[$t]}"; then status[$t]=ok; else status[$t]=FAILED; fi
  done
done

# 5. Report.
n_failed=0
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  corpus="$(echo "$done_line" | grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)"
  cov="$(echo "$done_line" | grep -oE 'cov: [0-9]+' || true)"
  rate="$(echo "$done_line" | grep -oE 'exec/s: [0-9]+' || true)"
  if [ "${status[$t]}" = ok ] && [ -n "$done_line" ]; then
    echo "fuzz: $t: ok, ${execs:-?} executions in ${seconds} s ($rate, $cov, $corpus)"
  else
    n_failed=$((n_failed + 1))
    echo "fuzz: $t: FAILED after ${execs:-?} executions; see $log"
    grep -m 3 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY' "$log" | sed 's/^/fuzz:   /' || true
    ls -t "fuzz/artifacts/$t/" 2>/dev/null | head -n 1 | sed "s|^|fuzz:   input: fuzz/artifacts/$t/|" || true
  fi
done
# A closing line in the form test runners use, for whoever reads the log's end.
echo "fuzz: $((${#targets[@]} - n_failed)) passed, $n_failed failed"
[ "$n_failed" = 0 ]
exit
}
