"""Interleaved rounds: ONNX Runtime and tcc libraries on the same inputs, one after another.

Usage: rounds.py MODEL.onnx --lib NAME=LIB.so [--lib ...] --case CASE [--case ...]
                 [--rounds R] [--runs N] [--threads T] [--tcc PATH] [--python PATH]
                 [--openvino]

On a noisy machine one engine's median moves by tens of percent from one minute to the next,
so a ratio of two medians taken minutes apart says little. Each round times, per case, ONNX
Runtime (scripts/bench/ort_bench.py) and then each tcc library (`tcc bench`), N runs each;
the report gives every round's medians and, per case and library, the median over the rounds
of the per-round ratio tcc / ONNX Runtime. The cases are the ref_CASE.npz archives beside the
model. With --openvino, each round also times OpenVINO (scripts/bench/ov_bench.py, f32, in
the same Python, which must have it installed) after ONNX Runtime, and the report adds its
per-round ratio to ONNX Runtime and each library's to it. Prints a Markdown table to stdout;
progress goes to stderr.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys


def script_median(script: str, python: str, model: str, npz: str, runs: int,
                  threads: int) -> float:
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [python, os.path.join(here, script), model, npz, "--runs", str(runs),
         "--threads", str(threads)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{script} failed: {done.stderr.strip()}")
    return float(json.loads(done.stdout)["median_ms"])


def tcc_median(tcc: str, lib: str, npz: str, runs: int, threads: int) -> float:
    out = subprocess.run(
        [tcc, "bench", lib, "--inputs", npz, "--runs", str(runs), "--threads", str(threads)],
        check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"median=([0-9.]+)", out.strip().splitlines()[-1])
    if not m:
        raise RuntimeError(f"no median in tcc bench's output: {out!r}")
    return float(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--lib", action="append", required=True, help="NAME=LIB.so")
    p.add_argument("--case", action="append", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tcc", default="target/release/tcc")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--openvino", action="store_true",
                   help="also time OpenVINO (f32) in each round")
    a = p.parse_args()
    if a.runs < 20:
        p.error("--runs must be at least 20")
    libs = []
    for spec in a.lib:
        name, _, path = spec.partition("=")
        if not path:
            p.error(f"--lib {spec!r}: expected NAME=LIB.so")
        libs.append((name, path))
    folder = os.path.dirname(os.path.abspath(a.model))
    rows = []
    ratios = {}
    ov_ratios = {}
    for r in range(1, a.rounds + 1):
        for case in a.case:
            npz = os.path.join(folder, f"ref_{case}.npz")
            print(f"round {r}, {case}: ONNX Runtime", file=sys.stderr)
            ort = script_median("ort_bench.py", a.python, a.model, npz, a.runs, a.threads)
            row = [case, str(r), f"{ort:.2f}"]
            ov = None
            if a.openvino:
                print(f"round {r}, {case}: OpenVINO", file=sys.stderr)
                ov = script_median("ov_bench.py", a.python, a.model, npz, a.runs, a.threads)
                row += [f"{ov:.2f}", f"{ov / ort:.2f}"]
                ratios.setdefault((case, "OpenVINO"), []).append(ov / ort)
            for name, lib in libs:
                print(f"round {r}, {case}: {name}", file=sys.stderr)
                t = tcc_median(a.tcc, lib, npz, a.runs, a.threads)
                row += [f"{t:.2f}", f"{t / ort:.2f}"]
                ratios.setdefault((case, name), []).append(t / ort)
                if ov is not None:
                    row.append(f"{t / ov:.2f}")
                    ov_ratios.setdefault((case, name), []).append(t / ov)
            rows.append(row)
    head = ["case", "round", "ONNX Runtime ms"]
    if a.openvino:
        head += ["OpenVINO ms", "OpenVINO / ORT"]
    for name, _ in libs:
        head += [f"{name} ms", f"{name} / ORT"]
        if a.openvino:
            head.append(f"{name} / OpenVINO")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"Median over {a.rounds} rounds of the per-round ratio tcc / ONNX Runtime "
          f"({a.runs} runs per engine per round, {a.threads} threads):")
    print()
    for (case, name), rs in ratios.items():
        m = statistics.median(rs)
        print(f"- {case}, {name}: **{m:.2f}** ({1 / m:.2f} times ONNX Runtime's speed)")
    if ov_ratios:
        print()
        print("Median over the rounds of the per-round ratio tcc / OpenVINO:")
        print()
        for (case, name), rs in ov_ratios.items():
            m = statistics.median(rs)
            print(f"- {case}, {name}: **{m:.2f}** ({1 / m:.2f} times OpenVINO's speed)")


if __name__ == "__main__":
    main()
