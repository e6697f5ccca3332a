"""examples/python: the sentence-embedding example runs and agrees with ONNX Runtime."""

import re
import subprocess
import sys

from tcc_test_support import REPO, shared


def test_the_embedding_example_agrees_with_onnx_runtime(minilm_so):
    shared("models", "minilm-l6", "ref_sentences.npz")
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "embeddings.py"),
         "--library", str(minilm_so), "--runs", "3"],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    cosines = [float(c) for c in re.findall(r"tokens\): cosine (\d\.\d+)", out.stdout)]
    assert len(cosines) == 16, out.stdout
    assert min(cosines) >= 0.9999, out.stdout
    assert re.search(r"tcc [\d.]+ ms, onnxruntime [\d.]+ ms per batch", out.stdout), out.stdout
