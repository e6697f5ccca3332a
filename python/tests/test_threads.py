"""The thread-safety contract from Python threads: a Model may be called from any number of
threads at once (each call takes one of its sessions, the others wait), results do not
depend on which session or thread computed them, and the GIL is released during a run."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tcc
from tcc_test_support import shared


def batches(count):
    """`count` different inputs of the tiny encoder: batch 1-3, length 3-17."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(count):
        batch, seq = 1 + k % 3, 3 + (5 * k) % 15
        ids = rng.integers(1, 90, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), np.int64)
        mask[-1, seq - k % 3:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


@pytest.mark.parametrize("sessions", [1, 3])
def test_concurrent_calls_give_the_results_of_sequential_ones(tiny_so, sessions):
    cases = batches(24)
    alone = tcc.load(tiny_so, threads=1)
    want = [alone.run(c)["last_hidden_state"] for c in cases]
    shared_model = tcc.load(tiny_so, threads=1, sessions=sessions)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda c: shared_model.run(c)["last_hidden_state"], cases))
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_the_gil_is_released_during_a_run(minilm_so):
    """A Python thread keeps running while another thread is inside a long run: the longest
    pause between two steps of its loop stays far below the run's length (with the GIL held
    it would be at least one run)."""
    m = tcc.load(minilm_so, threads=1)
    ref = np.load(shared("models", "minilm-l6", "ref_b1_s512.npz"))
    feeds = {i.name: ref[i.name] for i in m.inputs}
    start = time.perf_counter()
    m.run(feeds)
    one_run = time.perf_counter() - start
    assert one_run > 0.02, f"a run of {one_run * 1e3:.1f} ms is too short to tell"

    done = threading.Event()

    def runner():
        for _ in range(3):
            m.run(feeds)
        done.set()

    t = threading.Thread(target=runner)
    t.start()
    longest = 0.0
    last = time.perf_counter()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    t.join()
    assert longest < one_run / 2, (
        f"the Python thread stalled {longest * 1e3:.1f} ms during runs of {one_run * 1e3:.1f} ms")
