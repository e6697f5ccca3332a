#!/usr/bin/env bash
# Runs tcc's main job on the committed example and checks it against ONNX Runtime.
#
# It inspects examples/tiny-encoder/model.onnx, runs it in tcc's reference
# interpreter on examples/tiny-encoder/inputs.npz, and checks the output
# against examples/tiny-encoder/expected.npz (ONNX Runtime's output for the
# same inputs) within 1e-4 * max(1, max |expected|). Exits non-zero on a
# mismatch. Build first with `bash scripts/setup.sh`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tcc=./target/release/tcc
[ -x "$tcc" ] || { echo "demo: $tcc is missing: run 'bash scripts/setup.sh' first" >&2; exit 1; }
ex=examples/tiny-encoder
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out.npz"

echo "\$ tcc inspect $ex/model.onnx"
"$tcc" inspect "$ex/model.onnx"
echo
echo "\$ tcc interpret $ex/model.onnx --inputs $ex/inputs.npz --output $out --expected $ex/expected.npz"
"$tcc" interpret "$ex/model.onnx" --inputs "$ex/inputs.npz" --output "$out" --expected "$ex/expected.npz"
echo "demo: tcc matches ONNX Runtime on $ex"
