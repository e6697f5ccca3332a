"""Sentence embeddings with all-MiniLM-L6-v2 compiled by tcc, checked against ONNX Runtime.

    python examples/python/embeddings.py [--library minilm.so] [--runs 20]

It compiles ../shared/models/minilm-l6/model.onnx with tcc.compile (unless --library names
a library already compiled from it), runs it on the 16 real sentences of ref_sentences.npz
(their token ids, attention masks and token types, as the model's tokenizer made them),
pools each sentence's embedding (the attention-mask-weighted mean of last_hidden_state,
L2-normalised, as sentence-transformers does), does the same with onnxruntime on the same
inputs, and prints the cosine of the two embeddings of every sentence and the median time
of a run of the batch with each. It exits with status 1 if any cosine is below 0.9999.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import tcc

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MODEL_DIR = SHARED / "models" / "minilm-l6"


def embed(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mask-weighted mean pooling over the sequence, then L2 normalisation."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def median_ms(fn, runs: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, help="minilm-l6 compiled by tcc (default: compile it now)")
    parser.add_argument("--threads", type=int, default=0, help="threads (0: the library's default)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of the batch for each")
    args = parser.parse_args()
    if not MODEL_DIR.is_dir():
        print(f"error: {MODEL_DIR} is missing: this example needs ../shared beside the repository",
              file=sys.stderr)
        return 2

    ref = np.load(MODEL_DIR / "ref_sentences.npz")
    feeds = {k: ref[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    mask = feeds["attention_mask"]

    with tempfile.TemporaryDirectory() as tmp:
        library = args.library
        if library is None:
            start = time.perf_counter()
            library = tcc.compile(MODEL_DIR / "model.onnx", Path(tmp) / "minilm.so")
            print(f"compiled {MODEL_DIR / 'model.onnx'} in {time.perf_counter() - start:.1f} s")
        model = tcc.load(library, threads=args.threads)
        (hidden,) = model.run(None, feeds)
        ours = embed(hidden, mask)
        tcc_ms = median_ms(lambda: model.run(None, feeds), args.runs)

    options = ort.SessionOptions()
    if args.threads > 0:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    (theirs_hidden,) = session.run(None, feeds)
    theirs = embed(theirs_hidden, mask)
    ort_ms = median_ms(lambda: session.run(None, feeds), args.runs)

    cosines = (ours * theirs).sum(axis=1)
    lengths = mask.sum(axis=1)
    print(f"{len(cosines)} sentences, batch {mask.shape[0]} x {mask.shape[1]} tokens, "
          f"{model.threads} threads")
    for k, (cos, n) in enumerate(zip(cosines, lengths)):
        print(f"  sentence {k:2d} ({n:2d} tokens): cosine {cos:.7f}")
    print(f"lowest cosine {cosines.min():.7f} (needs >= 0.9999)")
    print(f"tcc {tcc_ms:.2f} ms, onnxruntime {ort_ms:.2f} ms per batch "
          f"(median of {args.runs}; onnxruntime / tcc = {ort_ms / tcc_ms:.2f})")
    return 0 if cosines.min() >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
