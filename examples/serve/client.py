"""Concurrent requests to the embedding endpoint of serve_app.py; prints requests/s.

    python client.py --url http://127.0.0.1:8000/embed --requests 256 --concurrency 16

The requests are the real sentences of ../shared/models/minilm-l6/ref_sentences.npz (their
tokens without padding, lengths 5 to 20), cycled and shuffled. Importable: `sentences`,
`mixed_requests`, `embed_all`.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import random
import threading
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
import requests

DEFAULT_URL = "http://127.0.0.1:8000/embed"
SHARED = Path(__file__).resolve().parents[3] / "shared"
REF_SENTENCES = SHARED / "models" / "minilm-l6" / "ref_sentences.npz"


def sentences(path: Path = REF_SENTENCES) -> List[List[int]]:
    """The token ids of each sentence of a reference .npz, its padding left out (per its
    attention_mask)."""
    ref = np.load(path)
    return [row[mask.astype(bool)].tolist()
            for row, mask in zip(ref["input_ids"], ref["attention_mask"])]


def mixed_requests(pool: Sequence[Sequence[int]], count: int, seed: int = 0) -> List[List[int]]:
    """`count` requests cycled from `pool` and shuffled (with `seed`), so that concurrent
    requests, and so each batch, mix lengths."""
    out = [list(pool[k % len(pool)]) for k in range(count)]
    random.Random(seed).shuffle(out)
    return out


class Results(NamedTuple):
    embeddings: List[np.ndarray]   # in the order of the requests
    batch_sizes: List[int]         # the server's x-batch-size for each (0 if absent)
    seconds: float                 # wall time of the whole run

    @property
    def per_second(self) -> float:
        return len(self.embeddings) / self.seconds


_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per client thread. trust_env=False: no proxy from the
    environment comes between this client and the server."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
        _local.session.trust_env = False
    return _local.session


def embed(url: str, input_ids: Sequence[int], timeout_s: float = 30.0):
    """One request: (embedding as float32 array, batch size the server ran it in)."""
    response = _session().post(url, json={"input_ids": list(input_ids)}, timeout=timeout_s)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    embedding = np.asarray(response.json()["embedding"], dtype=np.float32)
    return embedding, int(response.headers.get("x-batch-size", 0))


def embed_all(url: str, batch: Sequence[Sequence[int]], concurrency: int = 16,
              timeout_s: float = 30.0, deadline_s: float = 300.0) -> Results:
    """Sends every request of `batch`, at most `concurrency` at once, each within
    `timeout_s`, and all within `deadline_s` (else TimeoutError, the rest cancelled)."""
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(embed, url, ids, timeout_s) for ids in batch]
        done, pending = cf.wait(futures, timeout=deadline_s, return_when=cf.FIRST_EXCEPTION)
        if pending:
            for f in pending:
                f.cancel()
            failed = [f for f in done if f.exception() is not None]
            if failed:
                raise failed[0].exception()
            raise TimeoutError(f"{len(pending)} of {len(batch)} requests unanswered "
                               f"after {deadline_s} s")
        results = [f.result() for f in futures]
    seconds = time.perf_counter() - start
    return Results([e for e, _ in results], [b for _, b in results], seconds)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    parser.add_argument("--requests", type=int, default=256, help="how many (default 256)")
    parser.add_argument("--concurrency", type=int, default=16, help="at once (default 16)")
    parser.add_argument("--sentences", type=Path, default=REF_SENTENCES,
                        help="the .npz of tokenised sentences to send")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds for the whole run (default 300)")
    args = parser.parse_args(argv)

    batch = mixed_requests(sentences(args.sentences), args.requests)
    embed_all(args.url, batch[:args.concurrency], args.concurrency)  # warm-up
    results = embed_all(args.url, batch, args.concurrency, deadline_s=args.deadline)
    lengths = [len(ids) for ids in batch]
    print(f"{len(batch)} requests ({min(lengths)}-{max(lengths)} tokens), concurrency "
          f"{args.concurrency}: {results.seconds:.2f} s, {results.per_second:.1f} requests/s, "
          f"mean batch {np.mean(results.batch_sizes):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
