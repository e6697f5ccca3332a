#!/usr/bin/env bash
# Benchmarks tcc against ONNX Runtime and numpy's BLAS in one run, on this machine, and prints
# a markdown report on stdout (progress goes to stderr). See BENCHMARKS.md.
#
#     scripts/bench.sh                 # 30 timed runs after 5 warm-up runs per case
#     RUNS=50 WARMUP=10 scripts/bench.sh
#     FAMILIES="bert-ts17 gpt2-ts17" scripts/bench.sh   # other tests/zoo models across families
#
# What it does:
#   1. once: a Python venv under the target dir (target/bench-venv) with onnxruntime, numpy
#      and threadpoolctl from PyPI (nothing else is downloaded);
#   2. builds tcc and crates/codegen's gemm_bench example in release;
#   3. minilm-l6 (../shared/models/minilm-l6) at b1_s128, b1_s512 and b8_padded, on the
#      inputs held by the ref_<case>.npz files: ONNX Runtime (all graph optimisations, 2
#      intra-op threads) and tcc (`tcc compile --explain` once, then `tcc bench --threads
#      2`; and the same model compiled without the e-graph optimiser), each the
#      median of RUNS timed runs after WARMUP untimed ones, one engine at a time; `tcc run`
#      also writes tcc's outputs, which the report compares with the references;
#   4. across families: one model per family of tests/zoo ($FAMILIES, default BERT,
#      DistilBERT, RoBERTa, ALBERT, T5 encoder, GPT-2, ViT), on inputs that
#      scripts/bench/make_inputs.py makes with ONNX Runtime's outputs (b1_s128, or the longest
#      length the model runs at, since the zoo's position tables end at 64; a padded batch of
#      8 at that length, lengths spread as minilm-l6's ref_b8_padded; ViT at batch 1 and 8):
#      ONNX Runtime and tcc as in 3, tcc with `--remove-padding` too on the padded batch where
#      tcc accepts the option for the model, and each tcc's outputs for the report to compare;
#   5. GEMM GFLOP/s at 256, 512 and 1024 cubed: gemm_bench measures the machine's FMA peak and
#      tcc's GEMM on 1 and 2 threads; numpy's BLAS is measured in the same run, with
#      OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment only, and
#      threadpoolctl says which BLAS kernel ran;
#   6. scripts/bench/report.py turns the raw results (kept in target/bench/) into the report.
# A step that fails (tcc cannot compile a model yet, say) leaves its rows marked missing with
# the reason; the script still reports what did run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/bench-venv"
out="$target/bench"
runs="${RUNS:-30}"
warmup="${WARMUP:-5}"
threads=2
models="$root/../shared/models"
cases=(b1_s128 b1_s512 b8_padded)
# One model per family of tests/zoo, for the benchmark across families; any directory of
# tests/zoo can be added.
zoo="$root/tests/zoo"
default_families="bert-ts17 distilbert-ts17 roberta-ts17 albert-ts17 t5enc-ts17 gpt2-ts17 vit-ts17"
read -r -a families <<< "${FAMILIES-$default_families}"

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[ "$runs" -ge 20 ] 2>/dev/null || die "RUNS must be a number >= 20, not '$runs'"
[ "$warmup" -ge 1 ] 2>/dev/null || die "WARMUP must be a number >= 1, not '$warmup'"
[ -f "$models/minilm-l6/model.onnx" ] || die "$models/minilm-l6/model.onnx is missing"

# 1. The Python environment, made once.
if ! "$venv/bin/python" -c 'import onnxruntime, numpy, threadpoolctl' 2>/dev/null; then
  say "creating the Python venv $venv (onnxruntime, numpy, threadpoolctl from PyPI)"
  command -v python3 >/dev/null || die "python3 is needed to create the venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime numpy threadpoolctl
fi
python="$venv/bin/python"

# 2. The binaries.
say "building tcc and gemm_bench (release)"
cargo build --release --quiet -p tcc-cli
tcc="$target/release/tcc"
gemm_bench="$target/release/examples/gemm_bench"
rm -rf "$out"
mkdir -p "$out/minilm-l6"
if ! cargo build --release --quiet -p tcc-codegen --example gemm_bench 2> "$out/gemm_bench.build.log"; then
  say "gemm_bench does not build; see $out/gemm_bench.build.log"
  gemm_bench=""
fi

# The machine, for the report.
{
  echo "cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cpu_id=$(awk -F': *' '/^cpu family/ {f=$2} /^model[^ ]*\t*:/ && !/name/ {m=$2} /^stepping/ {s=$2; exit} END {printf "family %s model %s stepping %s", f, m, s}' /proc/cpuinfo)"
  echo "cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|avx512_vnni' | sort -u | tr '\n' ' ' | sed 's/ $//')"
  echo "logical_cpus=$(nproc)"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "kernel=$(uname -r)"
  echo "tcc=$("$tcc" --version)"
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]; then
    commit="$commit with local changes"
  fi
  echo "commit=$commit"
  echo "runs=$runs"
  echo "warmup=$warmup"
  echo "threads=$threads"
  echo "models=$models"
  echo "families=${families[*]}"
} > "$out/machine.txt"

# 3. minilm-l6: compile once, then each case with each engine, one at a time.
so="$out/minilm-l6/minilm-l6.so"
say "compiling minilm-l6 with tcc"
if "$tcc" compile "$models/minilm-l6/model.onnx" -o "$so" --explain > "$out/minilm-l6/compile.log" 2>&1; then
  compiled=1
else
  compiled=0
  say "tcc compile failed: $(tail -n 3 "$out/minilm-l6/compile.log" | tr '\n' ' ')"
fi
# The same model without the optimiser (each core op its own kernel), for comparison.
so_plain="$out/minilm-l6/minilm-l6-plain.so"
"$tcc" compile "$models/minilm-l6/model.onnx" -o "$so_plain" --disable-pass egraph \
  --disable-pass fuse-elementwise > "$out/minilm-l6/compile-plain.log" 2>&1 \
  || say "tcc compile without the optimiser failed: $(tail -n 1 "$out/minilm-l6/compile-plain.log")"
for case in "${cases[@]}"; do
  npz="$models/minilm-l6/ref_$case.npz"
  say "minilm-l6 $case: ONNX Runtime"
  "$python" scripts/bench/ort_bench.py "$models/minilm-l6/model.onnx" "$npz" \
    --runs "$runs" --warmup "$warmup" --threads "$threads" \
    > "$out/minilm-l6/$case.ort.json" 2> "$out/minilm-l6/$case.ort.log" \
    || say "ONNX Runtime failed on $case: $(tail -n 1 "$out/minilm-l6/$case.ort.log")"
  if [ "$compiled" = 1 ]; then
    say "minilm-l6 $case: tcc"
    "$tcc" bench "$so" --inputs "$npz" --threads "$threads" --runs "$runs" --warmup "$warmup" \
      > "$out/minilm-l6/$case.tcc.txt" 2> "$out/minilm-l6/$case.tcc.log" \
      || say "tcc bench failed on $case: $(tail -n 1 "$out/minilm-l6/$case.tcc.log")"
    if [ -f "$so_plain" ]; then
      say "minilm-l6 $case: tcc without the e-graph optimiser"
      "$tcc" bench "$so_plain" --inputs "$npz" --threads "$threads" --runs "$runs" --warmup "$warmup" \
        > "$out/minilm-l6/$case.tcc-plain.txt" 2> "$out/minilm-l6/$case.tcc-plain.log" \
        || say "tcc bench (no optimiser) failed on $case"
    fi
    # The outputs too, so the report can say how far they are from ONNX Runtime's.
    "$tcc" run "$so" --inputs "$npz" --output "$out/minilm-l6/$case.tcc-out.npz" --threads "$threads" \
      2> "$out/minilm-l6/$case.tcc-run.log" \
      || say "tcc run failed on $case: $(tail -n 1 "$out/minilm-l6/$case.tcc-run.log")"
  fi
done

# 4. Across families: per model, its inputs, then one compile (and one with --remove-padding
# if it has a padded case), then each case with each engine, one at a time.
for model in "${families[@]}"; do
  d="$out/families/$model"
  mkdir -p "$d"
  onnx="$zoo/$model/model.onnx"
  say "$model: inputs (and ONNX Runtime's outputs on them)"
  if [ ! -f "$onnx" ]; then
    echo "$onnx is missing" > "$d/inputs.log"
    say "$onnx is missing"
    continue
  fi
  # Seq 128 where the model takes it; the padded batch's lengths are minilm-l6's, scaled.
  if ! "$python" scripts/bench/make_inputs.py "$onnx" "$d" --seq 128 --batch 8 \
      --lengths-like "$models/minilm-l6/ref_b8_padded.npz" > "$d/cases.txt" 2> "$d/inputs.log"; then
    say "making $model's inputs failed: $(tail -n 1 "$d/inputs.log")"
    continue
  fi
  say "$model: compiling with tcc"
  "$tcc" compile "$onnx" -o "$d/$model.so" > "$d/compile.log" 2>&1 \
    || say "tcc compile of $model failed: $(tail -n 1 "$d/compile.log")"
  # Padding elimination, for the padded batch only. tcc refuses the option where it cannot
  # show that padded tokens leave the real ones alone (GPT-2's causal mask; the T5 encoder):
  # the report says "refused" there, with tcc's reason, and "missing" for any other failure.
  if grep -q '_padded$' "$d/cases.txt"; then
    say "$model: compiling with tcc --remove-padding"
    if ! "$tcc" compile "$onnx" -o "$d/$model-rp.so" --remove-padding \
        > "$d/compile-rp.log" 2>&1; then
      if grep -q 'cannot remove padding' "$d/compile-rp.log"; then
        say "tcc refuses --remove-padding for $model"
      else
        say "tcc compile --remove-padding of $model failed: $(tail -n 1 "$d/compile-rp.log")"
      fi
    fi
  fi
  mapfile -t model_cases < "$d/cases.txt"
  for case in "${model_cases[@]}"; do
    npz="$d/ref_$case.npz"
    say "$model $case: ONNX Runtime"
    "$python" scripts/bench/ort_bench.py "$onnx" "$npz" \
      --runs "$runs" --warmup "$warmup" --threads "$threads" \
      > "$d/$case.ort.json" 2> "$d/$case.ort.log" \
      || say "ONNX Runtime failed on $model $case: $(tail -n 1 "$d/$case.ort.log")"
    # tcc: the default library, then on a padded batch the --remove-padding one (files -rp).
    for variant in "" -rp; do
      lib="$d/$model$variant.so"
      [ -f "$lib" ] || continue
      [ -z "$variant" ] || [[ "$case" == *_padded ]] || continue
      say "$model $case: tcc${variant:+ --remove-padding}"
      "$tcc" bench "$lib" --inputs "$npz" --threads "$threads" --runs "$runs" --warmup "$warmup" \
        > "$d/$case.tcc$variant.txt" 2> "$d/$case.tcc$variant.log" \
        || say "tcc$variant bench failed on $model $case: $(tail -n 1 "$d/$case.tcc$variant.log")"
      "$tcc" run "$lib" --inputs "$npz" --output "$d/$case.tcc$variant-out.npz" \
        --threads "$threads" 2> "$d/$case.tcc$variant-run.log" \
        || say "tcc$variant run failed on $model $case: $(tail -n 1 "$d/$case.tcc$variant-run.log")"
    done
  done
done

# 5. GEMM: tcc's kernels and the FMA peak, then numpy's BLAS.
if [ -n "$gemm_bench" ]; then
  say "GEMM: gemm_bench (FMA peak, tcc on 1 and 2 threads)"
  "$gemm_bench" 256 512 1024 > "$out/gemm_bench.txt" 2> "$out/gemm_bench.log" \
    || say "gemm_bench failed: $(tail -n 1 "$out/gemm_bench.log")"
fi
say "GEMM: numpy"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" scripts/bench/blas_bench.py \
  --sizes 256 512 1024 --threads 1 2 > "$out/blas.json" 2> "$out/blas.log" \
  || say "numpy's GEMM failed: $(tail -n 1 "$out/blas.log")"

# 6. The report.
"$python" scripts/bench/report.py "$out"
