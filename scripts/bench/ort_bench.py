"""Times ONNX Runtime on one model and one npz of inputs; prints one JSON line.

Usage: ort_bench.py MODEL.onnx INPUTS.npz --runs N --warmup W --threads T

The session uses every graph optimisation (ORT_ENABLE_ALL), T intra-op threads, one inter-op
thread and sequential execution, on the CPU execution provider. Only the arrays of INPUTS.npz
that are model inputs are fed (a reference archive also holds the expected outputs). Each of
the N timed runs is timed on its own with time.perf_counter after W untimed warm-up runs; the
line holds every time in milliseconds and their min, median and max.
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        args.model, sess_options=options, providers=["CPUExecutionProvider"]
    )
    arrays = np.load(args.inputs)
    feed = {}
    for spec in session.get_inputs():
        if spec.name not in arrays:
            raise SystemExit(f"error: input `{spec.name}` is not in {args.inputs}")
        feed[spec.name] = arrays[spec.name]

    for _ in range(args.warmup):
        session.run(None, feed)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    print(
        json.dumps(
            {
                "engine": "onnxruntime",
                "version": ort.__version__,
                "threads": args.threads,
                "runs": args.runs,
                "warmup": args.warmup,
                "min_ms": min(times),
                "median_ms": statistics.median(times),
                "max_ms": max(times),
                "inputs": {k: list(v.shape) for k, v in feed.items()},
                "times_ms": times,
            }
        )
    )


if __name__ == "__main__":
    main()
