"""What the Python package adds to a run: tcc's `m.run` against `tcc bench` on the same
library and inputs, and against onnxruntime's InferenceSession.run, in interleaved rounds.

Usage (in the environment scripts/setup.sh makes):
    .venv/bin/python scripts/bench/python_overhead.py MODEL.onnx --case b1_s128 \\
        [--rounds 5] [--runs 50] [--threads 2] [--library MODEL.so]

Each round times, one after another, `tcc bench LIB --inputs ref_CASE.npz` (the C API call
alone, session-owned outputs), `m.run(feeds)` from Python (inputs read in place, the GIL
released, outputs copied into new numpy arrays), and onnxruntime's `session.run(None,
feeds)` with all graph optimisations on the same threads; N runs each, median per round.
The report gives each round's medians and, over the rounds, the median of the per-round
differences and ratios. Without --library it compiles MODEL.onnx with tcc.compile first.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import tcc


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_median(lib: Path, npz: Path, runs: int, threads: int) -> float:
    out = subprocess.run([str(tcc.compiler()), "bench", str(lib), "--inputs", str(npz),
                          "--runs", str(runs), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"median=([0-9.]+)", out.strip().splitlines()[-1]).group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--case", default="b1_s128")
    p.add_argument("--library", type=Path)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    npz = args.model.parent / f"ref_{args.case}.npz"
    with tempfile.TemporaryDirectory() as tmp:
        lib = args.library or tcc.compile(args.model, Path(tmp) / "model.so")
        m = tcc.load(lib, threads=args.threads)
        ref = np.load(npz)
        feeds = {i.name: np.ascontiguousarray(ref[i.name]) for i in m.inputs}
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
        ort_feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
        rows = []
        for r in range(args.rounds):
            bench = bench_median(lib, npz, args.runs, args.threads)
            py = median_ms(lambda: m.run(feeds), args.runs)
            onnx = median_ms(lambda: session.run(None, ort_feeds), args.runs)
            rows.append((bench, py, onnx))
            print(f"round {r + 1}: tcc bench {bench:.3f} ms, m.run {py:.3f} ms, "
                  f"onnxruntime {onnx:.3f} ms", file=sys.stderr)
    print(f"| round | tcc bench (ms) | tcc m.run (ms) | onnxruntime run (ms) |")
    print("|---|---|---|---|")
    for k, (b, py, onnx) in enumerate(rows):
        print(f"| {k + 1} | {b:.3f} | {py:.3f} | {onnx:.3f} |")
    added = statistics.median(py - b for b, py, _ in rows)
    ratio = statistics.median(py / b for b, py, _ in rows)
    vs_ort = statistics.median(onnx / py for _, py, onnx in rows)
    print(f"\n{args.model.parent.name} {args.case}, {args.threads} threads, {args.rounds} rounds "
          f"of {args.runs} runs: m.run - tcc bench = {added:+.3f} ms (m.run / tcc bench = "
          f"{ratio:.3f}); onnxruntime / m.run = {vs_ort:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
