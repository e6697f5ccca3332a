"""What ort_bench.py and ov_bench.py share: the command line, the timed loop, the JSON line.

Usage of either: SCRIPT MODEL.onnx INPUTS.npz --runs N --warmup W --threads T. Each of the N
timed runs is timed on its own with time.perf_counter after W untimed warm-up runs; the line
holds every time in milliseconds and their min, median and max.
"""

import argparse
import json
import statistics
import time


def parse_args(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def feed_of(arrays, names, path: str) -> dict:
    """The arrays of an npz archive that are model inputs, by the model's input names."""
    feed = {}
    for name in names:
        if name not in arrays:
            raise SystemExit(f"error: input `{name}` is not in {path}")
        feed[name] = arrays[name]
    return feed


def time_and_report(run, args: argparse.Namespace, feed: dict, **fields) -> None:
    """Runs `run()` W times untimed and N times timed, then prints the JSON line."""
    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    print(
        json.dumps(
            {
                **fields,
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
