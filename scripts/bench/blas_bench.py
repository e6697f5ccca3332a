"""Times numpy's float32 matrix product (its BLAS sgemm) at N x N x N; prints one JSON line.

Usage: blas_bench.py [--sizes 256 512 1024] [--threads 1 2] [--min-time SECONDS]

For each thread count (set with threadpoolctl) and size, C = A @ B on random float32 operands
is run once to warm up, then repeatedly for at least --min-time seconds; the best time gives
GFLOP/s as 2 N^3 / time, the same measure crates/codegen's gemm_bench uses for tcc's GEMM.
The line also says which BLAS ran: threadpoolctl's report of the library, its version, its
threading layer and the kernel architecture it chose for this CPU.

Run it without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the environment, so that OpenBLAS
picks the kernels for this CPU itself (scripts/bench.sh does).
"""

import argparse
import json
import os
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def best_time(run, min_time: float) -> float:
    run()
    best = float("inf")
    started = time.perf_counter()
    while time.perf_counter() - started < min_time:
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-time", type=float, default=0.4)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    results = []
    for threads in args.threads:
        with threadpool_limits(limits=threads, user_api="blas"):
            for n in args.sizes:
                a = rng.standard_normal((n, n), dtype=np.float32)
                b = rng.standard_normal((n, n), dtype=np.float32)
                c = np.empty((n, n), dtype=np.float32)
                seconds = best_time(lambda: np.matmul(a, b, out=c), args.min_time)
                results.append(
                    {"size": n, "threads": threads, "gflops": 2 * n**3 / seconds / 1e9}
                )
    blas = [
        {k: v for k, v in pool.items() if k != "filepath"}
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ]
    print(
        json.dumps(
            {
                "engine": "numpy",
                "numpy": np.__version__,
                "blas": blas,
                "env": {
                    k: os.environ[k]
                    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                    if k in os.environ
                },
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
