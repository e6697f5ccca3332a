"""Times ONNX Runtime on one model and one npz of inputs; prints one JSON line.

Usage: ort_bench.py MODEL.onnx INPUTS.npz --runs N --warmup W --threads T

The session uses every graph optimisation (ORT_ENABLE_ALL), T intra-op threads, one inter-op
thread and sequential execution, on the CPU execution provider. Only the arrays of INPUTS.npz
that are model inputs are fed (a reference archive also holds the expected outputs). Each of
the N timed runs is timed on its own with time.perf_counter after W untimed warm-up runs; the
line holds every time in milliseconds and their min, median and max (see timing.py).
"""

import numpy as np
import onnxruntime as ort

from timing import feed_of, parse_args, time_and_report


def main() -> None:
    args = parse_args(__doc__)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        args.model, sess_options=options, providers=["CPUExecutionProvider"]
    )
    feed = feed_of(np.load(args.inputs), [i.name for i in session.get_inputs()], args.inputs)
    time_and_report(
        lambda: session.run(None, feed),
        args,
        feed,
        engine="onnxruntime",
        version=ort.__version__,
    )


if __name__ == "__main__":
    main()
