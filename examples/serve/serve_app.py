"""Sentence embeddings over HTTP with Ray Serve and a tcc-compiled all-MiniLM-L6-v2.

Each replica of the `Embedder` deployment loads the compiled model library with tcc.load.
Requests are batched with @serve.batch: the batch is padded to its longest sequence, run
once, and every request gets its own L2-normalised mean-pooled embedding (384 floats).

    POST /embed   {"input_ids": [101, 1037, 2158, ..., 102]}   (one sentence, no padding)
    ->            {"embedding": [0.0123, ...]}                  (and header x-batch-size)

As a script it starts Ray (or joins the cluster in RAY_ADDRESS), serves, and blocks:

    python serve_app.py --library model.so --replicas 2 --threads 1

With the Serve CLI, through the application builder at the end of this file:

    serve run serve_app:app_builder library=/abs/path/model.so replicas=2 threads=1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

# A Ray that this example starts by itself (ray.init() with no RAY_ADDRESS) stays on this
# machine's loopback: by default Ray takes the address of the default route's interface
# as the node's IP and its servers listen on every interface. Ray reads this switch (its
# "single-machine, loopback only" mode) when it is imported, hence before `import ray`.
# Joining a cluster (RAY_ADDRESS set) leaves Ray's defaults alone.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

import tcc  # noqa: E402

MAX_BATCH_SIZE = 16
BATCH_WAIT_TIMEOUT_S = 0.01
MAX_TOKENS = 512            # the model's position embeddings
LIBRARY_ENV = "TCC_SERVE_LIBRARY"
THREADS_ENV = "TCC_SERVE_THREADS"

# The replicas unpickle Embedder by importing this module, in worker processes that may
# run on other machines and in another directory: the driver ships this directory to them
# as the job's working_dir, which Serve's deployments inherit (the model library is not
# shipped; each node opens it at its own path).
RUNTIME_ENV = {
    "working_dir": str(Path(__file__).resolve().parent),
    "excludes": ["__pycache__", ".pytest_cache", "*.so", "*.h", "*.onnx", "*.npz"],
}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings [batch, dim]: the attention_mask-weighted mean of the hidden
    states [batch, seq, dim], L2-normalised (sentence-transformers' pooling)."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def pad_batch(sequences: List[np.ndarray]) -> Dict[str, np.ndarray]:
    """The model's feeds for a list of 1-D token id arrays: each row padded to the longest
    with token 0, attention mask 1 on the real tokens and 0 on the padding, token types 0."""
    longest = max(len(s) for s in sequences)
    ids = np.zeros((len(sequences), longest), dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


class BadRequest(ValueError):
    """A request this deployment refuses (HTTP 400)."""


def parse_input_ids(body) -> np.ndarray:
    """The token ids of a request body {"input_ids": [int, ...]}, or BadRequest."""
    if not isinstance(body, dict) or "input_ids" not in body:
        raise BadRequest('the body must be a JSON object {"input_ids": [token ids]}')
    ids = body["input_ids"]
    if (not isinstance(ids, list) or not ids
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids)):
        raise BadRequest("input_ids must be a non-empty list of integer token ids")
    if len(ids) > MAX_TOKENS:
        raise BadRequest(f"input_ids has {len(ids)} tokens; the model takes at most {MAX_TOKENS}")
    if min(ids) < 0 or max(ids) >= 2 ** 63:
        raise BadRequest("input_ids must be token ids, from 0 to the vocabulary's size")
    return np.asarray(ids, dtype=np.int64)


# max_ongoing_requests bounds how many requests Serve hands one replica at once; it must be
# at least max_batch_size for a batch to ever fill, and twice that lets the next batch
# gather while one runs. num_cpus is set per replica in build_app (its threads).
@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE)
class Embedder:
    """A replica: one tcc model library, one batch running at a time on `threads` threads."""

    def __init__(self, library: Optional[str] = None, threads: Optional[int] = None):
        library = library or os.environ.get(LIBRARY_ENV)
        if not library:
            raise ValueError(f"Embedder needs the compiled model library: pass library= "
                             f"or set {LIBRARY_ENV}")
        if threads is None:
            threads = int(os.environ.get(THREADS_ENV, "1"))
        # One session: @serve.batch runs one batch at a time (max_concurrent_batches=1),
        # and that batch gets all of this replica's threads.
        self.model = tcc.load(library, threads=threads, sessions=1)
        names = [i.name for i in self.model.inputs]
        if sorted(names) != ["attention_mask", "input_ids", "token_type_ids"]:
            raise ValueError(f"{library} takes {names}; this example serves BERT-style encoders "
                             f"with inputs input_ids, attention_mask, token_type_ids")

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            ids = parse_input_ids(await request.json())
        except ValueError as e:  # BadRequest, or a body that is not JSON
            return JSONResponse({"error": str(e)}, status_code=400)
        result = await self.embed(ids)
        if isinstance(result, Exception):
            return JSONResponse({"error": str(result)}, status_code=400)
        embedding, batch_size = result
        # The batch size in a header, so clients can see batching at work.
        return JSONResponse({"embedding": embedding.tolist()},
                            headers={"x-batch-size": str(batch_size)})

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S,
                 max_concurrent_batches=1)
    async def embed(self, batch: List[np.ndarray]) -> List[Union[tuple, Exception]]:
        """Called with one sequence, awaited by each request; Serve gathers the concurrent
        calls into `batch` (up to MAX_BATCH_SIZE, waiting at most BATCH_WAIT_TIMEOUT_S after
        the first) and hands each caller its element of the returned list."""
        # The run releases the GIL: in a worker thread it leaves this replica's event loop
        # free to take the requests of the next batch meanwhile.
        return await asyncio.to_thread(self._embed_batch, batch)

    def _embed_batch(self, batch: List[np.ndarray]) -> List[Union[tuple, Exception]]:
        feeds = pad_batch(batch)
        try:
            hidden = self.model.run(feeds)["last_hidden_state"]
        except tcc.RunError:
            # A token id out of the vocabulary refuses the whole batch: run each request
            # alone, so only the bad ones fail.
            return [self._embed_alone(seq) for seq in batch]
        return [(e, len(batch)) for e in mean_pool(hidden, feeds["attention_mask"])]

    def _embed_alone(self, seq: np.ndarray) -> Union[tuple, Exception]:
        feeds = pad_batch([seq])
        try:
            hidden = self.model.run(feeds)["last_hidden_state"]
        except tcc.RunError as e:
            return e
        return mean_pool(hidden, feeds["attention_mask"])[0], 1


def build_app(library: Union[str, os.PathLike], replicas: int = 1, threads: int = 1):
    """The Embedder application, bound: `serve.run(build_app(...), route_prefix="/embed")`.

    Each of `replicas` replicas loads `library` (a path every node can open: the replicas
    may run on other machines of a cluster) and runs on `threads` threads, which is also the
    CPUs Ray reserves for it.
    """
    library = str(Path(library).resolve())
    return Embedder.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads},
    ).bind(library, threads)


def app_builder(args: Dict[str, str]):
    """For `serve run serve_app:app_builder library=PATH replicas=N threads=T` (or a Serve
    config file's `args`); library defaults to $TCC_SERVE_LIBRARY."""
    library = args.get("library") or os.environ.get(LIBRARY_ENV)
    if not library:
        raise ValueError(f"give library=PATH or set {LIBRARY_ENV}")
    return build_app(library, int(args.get("replicas", 1)), int(args.get("threads", 1)))


def start_local_ray(num_cpus: int = 2, object_store_mb: int = 200) -> None:
    """Starts a Ray of this machine alone, on loopback, without the dashboard."""
    ray.init(num_cpus=num_cpus, include_dashboard=False,
             object_store_memory=object_store_mb * 1024 * 1024,
             _node_ip_address="127.0.0.1", runtime_env=RUNTIME_ENV)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != "127.0.0.1":
        ray.shutdown()
        raise RuntimeError(f"the local Ray took {node_ip} as its address, not 127.0.0.1: import "
                           f"serve_app before ray, or set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host just now (for tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Starts Serve's HTTP proxy on host:port (on the head node only)."""
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", required=True, help="the tcc-compiled model library (.so)")
    parser.add_argument("--replicas", type=int, default=2, help="replicas (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per replica (default 1)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="HTTP host (default 127.0.0.1; 0.0.0.0 to serve other machines)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of a local Ray (default: replicas * threads)")
    args = parser.parse_args(argv)
    if not Path(args.library).is_file():
        parser.error(f"{args.library} does not exist")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` cleans up as Ctrl-C does
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env=RUNTIME_ENV)  # joins the cluster at RAY_ADDRESS ("auto": this node's)
    else:
        start_local_ray(num_cpus=args.num_cpus or args.replicas * args.threads)
    try:
        start_serve(args.host, args.port)
        serve.run(build_app(args.library, args.replicas, args.threads), route_prefix="/embed")
        print(f"serving {args.library} on http://{args.host}:{args.port}/embed with "
              f"{args.replicas} replica(s) x {args.threads} thread(s); Ctrl-C stops",
              flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
