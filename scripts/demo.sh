#!/usr/bin/env bash
# Runs tcc's main job on the committed example and checks it against ONNX Runtime.
#
# It inspects examples/tiny-encoder/model.onnx, compiles it into a shared
# library (model.so and its C header), runs the library on
# examples/tiny-encoder/inputs.npz and checks its output against
# examples/tiny-encoder/expected.npz (ONNX Runtime's output for the same
# inputs) within 1e-4 * max(1, max |expected|); then does the same check with
# the reference interpreter. Exits non-zero on a mismatch. Build first with
# `bash scripts/setup.sh`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tcc=./target/release/tcc
[ -x "$tcc" ] || { echo "demo: $tcc is missing: run 'bash scripts/setup.sh' first" >&2; exit 1; }
ex=examples/tiny-encoder
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say() { echo; echo "\$ $*"; }

say tcc inspect "$ex/model.onnx"
"$tcc" inspect "$ex/model.onnx"
say tcc compile "$ex/model.onnx" -o "$tmp/model.so" --shape batch=2,seq=7
"$tcc" compile "$ex/model.onnx" -o "$tmp/model.so" --shape batch=2,seq=7
say tcc run "$tmp/model.so" --inputs "$ex/inputs.npz" --output "$tmp/out.npz" --expected "$ex/expected.npz"
"$tcc" run "$tmp/model.so" --inputs "$ex/inputs.npz" --output "$tmp/out.npz" --expected "$ex/expected.npz"
say tcc interpret "$ex/model.onnx" --inputs "$ex/inputs.npz" --output "$tmp/ref.npz" --expected "$ex/expected.npz"
"$tcc" interpret "$ex/model.onnx" --inputs "$ex/inputs.npz" --output "$tmp/ref.npz" --expected "$ex/expected.npz"
echo
echo "demo: the compiled library and the interpreter both match ONNX Runtime on $ex"
