"""examples/serve: Ray Serve with 2 replicas of a tcc-compiled minilm-l6 answers 64
concurrent requests of mixed lengths with ONNX Runtime's embeddings.

Needs ../shared beside the repository (the test fails, naming the path, when it is missing)
and ray[serve] and requests in the environment. Ray runs locally, on loopback, with 2 CPUs.
"""

from pathlib import Path

import numpy as np
import pytest

import serve_app  # first: it keeps the Ray it starts on loopback (see there)
import client

import ray
from ray import serve
import requests
import tcc

SHARED = Path(__file__).resolve().parents[3] / "shared"
MINILM = SHARED / "models" / "minilm-l6"
REQUESTS = 64
CONCURRENCY = 16
MIN_COSINE = 0.9999
MAX_ABS_DIFF = 1e-4


def shared(name: str) -> Path:
    """A file of ../shared/models/minilm-l6, or a test failure naming it (never a skip)."""
    path = MINILM / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: this test needs the shared models and references "
                    f"checked out beside the repository ({SHARED})", pytrace=False)
    return path


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reference sentence embeddings, in float64: mask-weighted mean, L2-normalised."""
    w = mask.astype(np.float64)[:, :, None]
    mean = (hidden.astype(np.float64) * w).sum(axis=1) / w.sum(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def cases():
    """Distinct requests (token id lists) and ONNX Runtime's embedding of each: the 16 real
    sentences of ref_sentences.npz (5 to 20 tokens; references from its last_hidden_state)
    and 8 truncated ones (a prefix closed by [SEP], as a tokenizer's truncation leaves it;
    references from onnxruntime on that sequence alone)."""
    ref = np.load(shared("ref_sentences.npz"))
    full = client.sentences(shared("ref_sentences.npz"))
    full_refs = pooled(ref["last_hidden_state"], ref["attention_mask"])
    cases = list(zip(full, full_refs))

    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(shared("model.onnx")), options,
                                   providers=["CPUExecutionProvider"])
    sep = full[0][-1]
    for ids in sorted(full, key=len, reverse=True)[:8]:
        prefix = ids[:len(ids) // 2] + [sep]
        feeds = {"input_ids": np.array([prefix], dtype=np.int64),
                 "attention_mask": np.ones((1, len(prefix)), dtype=np.int64),
                 "token_type_ids": np.zeros((1, len(prefix)), dtype=np.int64)}
        hidden, = session.run(["last_hidden_state"], feeds)
        cases.append((prefix, pooled(hidden, feeds["attention_mask"])[0]))
    return cases


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """minilm-l6 compiled by tcc for this machine."""
    model = shared("model.onnx")
    return tcc.compile(model, tmp_path_factory.mktemp("serve") / "minilm.so")


@pytest.fixture(scope="module")
def url(library):
    """The /embed URL of Serve, 2 replicas of 1 thread, on a local Ray; shut down after."""
    try:
        serve_app.start_local_ray(num_cpus=2)
        port = serve_app.free_port()
        serve_app.start_serve(port=port)
        serve.run(serve_app.build_app(library, replicas=2, threads=1), route_prefix="/embed")
        status = serve.status().applications["default"].deployments["Embedder"]
        assert status.replica_states.get("RUNNING") == 2, status
        yield f"http://127.0.0.1:{port}/embed"
    finally:
        if ray.is_initialized():
            serve.shutdown()
        ray.shutdown()


def test_concurrent_requests_match_onnx_runtime(url, cases):
    order = np.random.default_rng(0).permutation(REQUESTS) % len(cases)
    batch = [cases[k][0] for k in order]
    results = client.embed_all(url, batch, concurrency=CONCURRENCY, timeout_s=60,
                               deadline_s=120)

    assert len(results.embeddings) == REQUESTS
    worst_cos, worst_diff = 1.0, 0.0
    for k, got in zip(order, results.embeddings):
        ids, want = cases[k]
        assert got.shape == (384,), f"{len(ids)} tokens: embedding of shape {got.shape}"
        cos = float(np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)))
        diff = float(np.abs(got - want).max())
        assert cos >= MIN_COSINE and diff <= MAX_ABS_DIFF, (
            f"request of {len(ids)} tokens {ids}: cosine {cos:.7f} (>= {MIN_COSINE}), "
            f"max abs difference {diff:.2e} (<= {MAX_ABS_DIFF})")
        worst_cos, worst_diff = min(worst_cos, cos), max(worst_diff, diff)
    # 16 requests at once over 2 replicas: @serve.batch must have run some together.
    assert max(results.batch_sizes) > 1, f"no request was batched: {results.batch_sizes}"
    print(f"\n{REQUESTS} requests ({len(cases)} distinct, "
          f"{min(len(c[0]) for c in cases)}-{max(len(c[0]) for c in cases)} tokens) in "
          f"{results.seconds:.2f} s, {results.per_second:.0f} requests/s, batch sizes "
          f"{min(results.batch_sizes)}-{max(results.batch_sizes)}, worst cosine "
          f"{worst_cos:.7f}, worst max abs difference {worst_diff:.1e}")


def test_bad_requests_are_refused(url):
    session = requests.Session()
    session.trust_env = False
    for body, says in [
        ({"input_ids": [101, 10 ** 9, 102]}, "out of range"),   # beyond the vocabulary
        ({"tokens": [101, 102]}, "input_ids"),
        ({"input_ids": []}, "non-empty"),
        ({"input_ids": [101] * 513}, "at most 512"),
        ({"input_ids": [101, -1, 102]}, "token ids"),
        ({"input_ids": [101, 10 ** 30, 102]}, "token ids"),
    ]:
        response = session.post(url, json=body, timeout=30)
        assert response.status_code == 400 and says in response.json()["error"], (
            body, response.status_code, response.text)
    # A good request still works after the refused ones.
    embedding, _ = client.embed(url, [101, 7592, 2088, 102])
    assert embedding.shape == (384,)
