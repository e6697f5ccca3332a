"""Times OpenVINO on one model and one npz of inputs; prints one JSON line.

Usage: ov_bench.py MODEL.onnx INPUTS.npz --runs N --warmup W --threads T

The CPU plugin compiles the ONNX model as it is (dynamic shapes), with T inference threads,
one stream, the latency hint and f32 inference precision: on CPUs with AMX or AVX512-BF16
OpenVINO would otherwise run the model in bf16, which is not the computation the other
engines do. Only the arrays of INPUTS.npz that are model inputs are fed. Each of the N timed
runs is timed on its own with time.perf_counter after W untimed warm-up runs; the line holds
every time in milliseconds and their min, median and max (see timing.py).

OpenVINO is not in the benchmark venv that scripts/bench.sh makes; install it there with
`target/bench-venv/bin/pip install openvino`.
"""

import numpy as np

from timing import feed_of, parse_args, time_and_report

try:
    import openvino as ov
except ImportError as e:  # pragma: no cover - a setup error, named for the user
    raise SystemExit(
        f"error: OpenVINO is not installed in this Python ({e}); "
        "install it with `target/bench-venv/bin/pip install openvino`"
    )


def main() -> None:
    args = parse_args(__doc__)
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
    names = [port.get_any_name() for port in compiled.inputs]
    feed = feed_of(np.load(args.inputs), names, args.inputs)
    time_and_report(
        lambda: request.infer(feed),
        args,
        feed,
        engine="openvino",
        version=ov.get_version(),
        precision=str(compiled.get_property("INFERENCE_PRECISION_HINT")),
    )


if __name__ == "__main__":
    main()
