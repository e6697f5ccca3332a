"""Requests per second of the embedding service, three ways, on the same requests:

  plain               tcc.load in this process (2 threads), each request run alone at batch 1,
                      one after the other: no HTTP, no batching
  serve 1x2 threads   Ray Serve, 1 replica of 2 threads, HTTP, @serve.batch
  serve 2x1 thread    Ray Serve, 2 replicas of 1 thread each, HTTP, @serve.batch

    python bench.py [--library minilm.so] [--case sentences] [--remove-padding]
                    [--requests 256] [--concurrency 16] [--markdown]

The requests are the sequences of ../shared/models/minilm-l6/ref_CASE.npz without their
padding, cycled and shuffled: `sentences` (16 real sentences of 5 to 20 tokens, the
default) or `b8_padded` (8 sequences of 17 to 128 tokens). Without --library it compiles
model.onnx into a temporary directory first (with --remove-padding, tcc's padding
elimination, so a padded batch runs only its real tokens). Ray runs locally on loopback with 2 CPUs; the HTTP client runs in this
process, on the same machine, so it takes its share of the CPUs too. Each mode is warmed up
with `concurrency` requests first, and must answer within --deadline seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

import numpy as np

import serve_app  # first: it keeps the Ray it starts on loopback
import client

import ray
from ray import serve
import tcc

MINILM = client.SHARED / "models" / "minilm-l6"
MIN_COSINE = 0.9999


class Row(NamedTuple):
    mode: str
    requests: int
    seconds: float
    mean_batch: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def plain(library: Path, batch: List[List[int]], warmup: int, deadline_s: float):
    """Each request alone at batch 1, one after the other, in this process."""
    model = tcc.load(library, threads=2)

    def embed(ids):
        feeds = serve_app.pad_batch([np.asarray(ids, dtype=np.int64)])
        hidden = model.run(feeds)["last_hidden_state"]
        return serve_app.mean_pool(hidden, feeds["attention_mask"])[0]

    for ids in batch[:warmup]:
        embed(ids)
    start = time.perf_counter()
    out = []
    for ids in batch:
        out.append(embed(ids))
        if time.perf_counter() - start > deadline_s:
            raise TimeoutError(f"plain: {len(out)} of {len(batch)} requests in {deadline_s} s")
    return out, Row("plain (batch 1, 2 threads)", len(batch), time.perf_counter() - start, 1.0)


def served(library: Path, replicas: int, threads: int, port: int, batch: List[List[int]],
           concurrency: int, deadline_s: float):
    """The requests over HTTP to Serve with `replicas` replicas of `threads` threads."""
    serve.run(serve_app.build_app(library, replicas, threads), route_prefix="/embed")
    try:
        url = f"http://127.0.0.1:{port}/embed"
        client.embed_all(url, batch[:concurrency], concurrency, deadline_s=deadline_s)
        results = client.embed_all(url, batch, concurrency, deadline_s=deadline_s)
    finally:
        serve.delete("default")  # the next mode starts from no replicas
    noun = "thread" if threads == 1 else "threads"
    mode = f"serve {replicas} x {threads} {noun}"
    return results.embeddings, Row(mode, len(batch), results.seconds,
                                   float(np.mean(results.batch_sizes)))


def table(rows: List[Row], markdown: bool) -> str:
    head = ["mode", "requests", "seconds", "req/s", "mean batch"]
    body = [[r.mode, str(r.requests), f"{r.seconds:.2f}", f"{r.per_second:.1f}",
             f"{r.mean_batch:.1f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "| --- | " + " | ".join(["---:"] * 4) + " |"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(x[k]) for x in [head] + body) for k in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(w) if k == 0 else c.rjust(w)  # noqa: E731
                                  for k, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head)] + [fmt(cells) for cells in body])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, help="a compiled minilm-l6 (default: compile one)")
    parser.add_argument("--case", default="sentences",
                        help="the requests: the sequences of ref_CASE.npz (sentences)")
    parser.add_argument("--remove-padding", action="store_true",
                        help="compile with padding elimination (without --library)")
    parser.add_argument("--requests", type=int, default=256, help="requests per mode (256)")
    parser.add_argument("--concurrency", type=int, default=16, help="client concurrency (16)")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds each mode may take at most (300)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)

    batch = client.mixed_requests(client.sentences(MINILM / f"ref_{args.case}.npz"),
                                  args.requests)
    with tempfile.TemporaryDirectory(prefix="tcc-serve-bench-") as tmp:
        library = args.library
        if library is None:
            print("compiling minilm-l6 ...", file=sys.stderr, flush=True)
            library = tcc.compile(MINILM / "model.onnx", Path(tmp) / "minilm.so",
                                  remove_padding=args.remove_padding)

        reference, row = plain(library, batch, args.concurrency, args.deadline)
        rows = [row]
        serve_app.start_local_ray(num_cpus=2)
        try:
            port = serve_app.free_port()
            serve_app.start_serve(port=port)
            for replicas, threads in [(1, 2), (2, 1)]:
                embeddings, row = served(library, replicas, threads, port, batch,
                                         args.concurrency, args.deadline)
                # Every answer agrees with the plain run's (padding must not change it).
                got, want = np.stack(embeddings), np.stack(reference)
                cosine = float(np.min(np.sum(got * want, axis=1)
                                      / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)))
                if cosine < MIN_COSINE:
                    raise AssertionError(f"{row.mode}: an embedding differs from the plain run's "
                                         f"(cosine {cosine:.6f})")
                rows.append(row)
        finally:
            serve.shutdown()
            ray.shutdown()

    lengths = [len(ids) for ids in batch]
    print(f"\n{args.requests} requests of {min(lengths)}-{max(lengths)} tokens "
          f"(mean {np.mean(lengths):.1f}, ref_{args.case}), client concurrency {args.concurrency}, "
          f"padding elimination {'on' if args.remove_padding else 'off'}, "
          f"{tcc.__name__} {tcc.__version__}, ray {ray.__version__}\n")
    print(table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
