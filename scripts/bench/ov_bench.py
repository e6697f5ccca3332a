"""Times OpenVINO on one model and one npz of inputs; prints one JSON line.

Usage: ov_bench.py MODEL.onnx INPUTS.npz --runs N --warmup W --threads T

The CPU plugin compiles the ONNX model as it is (dynamic shapes), with T inference threads,
one stream, the latency hint and f32 inference precision: on CPUs with AMX or AVX512-BF16
OpenVINO would otherwise run the model in bf16, which is not the computation the other
engines do. Only the arrays of INPUTS.npz that are model inputs are fed. Each of the N timed
runs is timed on its own with time.perf_counter after W untimed warm-up runs; the line holds
every time in milliseconds and their min, median and max, as ort_bench.py's does.

OpenVINO is not in the benchmark venv that scripts/bench.sh makes; install it there with
`target/bench-venv/bin/pip install openvino`.
"""

import argparse
import json
import statistics
import time

import numpy as np

try:
    import openvino as ov
except ImportError as e:  # pragma: no cover - a setup error, named for the user
    raise SystemExit(
        f"error: OpenVINO is not installed in this Python ({e}); "
        "install it with `target/bench-venv/bin/pip install openvino`"
    )


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

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(args.model),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": args.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    request = compiled.create_infer_request()
    arrays = np.load(args.inputs)
    feed = {}
    for port in compiled.inputs:
        name = port.get_any_name()
        if name not in arrays:
            raise SystemExit(f"error: input `{name}` is not in {args.inputs}")
        feed[name] = arrays[name]

    for _ in range(args.warmup):
        request.infer(feed)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        request.infer(feed)
        times.append((time.perf_counter() - start) * 1e3)
    print(
        json.dumps(
            {
                "engine": "openvino",
                "version": ov.get_version(),
                "threads": args.threads,
                "runs": args.runs,
                "warmup": args.warmup,
                "precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
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
