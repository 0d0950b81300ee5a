"""Serving throughput and latency for MiniLM, against in-process encode and a naive deployment.

One text per request (the hardest case for a server: all per-request overhead, nothing
amortised), SciFact claims as inputs, closed-loop clients at concurrency 1, 8 and 32.
Baselines, measured in the same run on the same inputs:

- in-process ``SentenceTransformer.encode`` with the served batch size (no HTTP at all);
- a naive Serve deployment that encodes each request alone as it arrives.

It also reads the embedder replica's own counters, to say where the time goes.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_serving.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "platform"), str(REPO_ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

from tests.benchmarks.report import markdown_table, write_section  # noqa: E402

CONCURRENCY = (1, 8, 32)
REQUESTS = {1: 24, 8: 96, 32: 192}
NAIVE_REQUESTS = {1: 12, 8: 32, 32: 64}  # the naive baseline is slow; fewer requests estimate its rate
BATCH_SIZE = 64
THREADS = os.cpu_count() or 1


@serve.deployment(name="Naive", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class NaiveEmbedder:
    """The baseline: each request encoded alone, in the order it arrives."""

    def __init__(self, model: str, threads: int):
        from embedforge.models.embedder import Embedder

        torch.set_num_threads(threads)
        self.embedder = Embedder.load(model, device="cpu")

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        vector = self.embedder.encode([body["input"]])[0]
        return {"data": [{"embedding": vector.tolist()}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_texts(count: int) -> list[str]:
    from embedforge.paths import shared_data_dir

    lines = (shared_data_dir() / "retrieval" / "scifact" / "queries.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines[:count]]


async def drive(url: str, body_for, texts: list[str], concurrency: int) -> tuple[float, list[float], list[list[float]]]:
    """Closed loop: ``concurrency`` clients send one text per request. Returns (texts/s, latencies, vectors)."""
    queue = list(enumerate(texts))[::-1]
    latencies, vectors = [], [None] * len(texts)

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            index, text = queue.pop()
            start = time.perf_counter()
            response = await http.post(url, json=body_for(text))
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            vectors[index] = response.json()["data"][0]["embedding"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(2)))  # warm up connections
        queue[:] = list(enumerate(texts))[::-1]
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(texts) / elapsed, latencies, vectors


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from embedforge.models.registry import resolve_model
    from embedforge.serving.app import start_local, stop_local

    load_before = os.getloadavg()[0]
    model_dir = str(resolve_model("all-MiniLM-L6-v2"))
    texts = load_texts(max(REQUESTS.values()))
    torch.set_num_threads(THREADS)

    in_process = SentenceTransformer(model_dir, device="cpu")
    in_process.encode(texts[:64], batch_size=BATCH_SIZE)
    reference = in_process.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True)
    single = []
    for text in texts[:50]:
        start = time.perf_counter()
        in_process.encode([text])
        single.append(time.perf_counter() - start)

    def in_process_rate(batch_texts: list[str]) -> float:
        """Measured right before each served run, so both see the same machine load."""
        start = time.perf_counter()
        in_process.encode(batch_texts, batch_size=BATCH_SIZE)
        return len(batch_texts) / (time.perf_counter() - start)

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    settings = {
        "embedder": model_dir,
        "embedder_name": "minilm",
        "embedder_batching": {"max_batch_size": BATCH_SIZE, "max_batch_tokens": 16384, "torch_threads": THREADS},
        "api_key_env": "EMBEDFORGE_BENCH_UNSET",
    }
    base = start_local(settings, port=port)
    serve.run(NaiveEmbedder.bind(model_dir, THREADS), name="naive", route_prefix="/naive", blocking=False)
    embedder = serve.get_deployment_handle("Embedder", "embedforge")

    rows, profile = [], []
    try:
        for concurrency in CONCURRENCY:
            batch_texts = texts[: REQUESTS[concurrency]]
            baseline = max(in_process_rate(batch_texts) for _ in range(2))
            naive_texts = batch_texts[: NAIVE_REQUESTS[concurrency]]
            naive_rate, naive_latency, _ = asyncio.run(drive(f"{base}/naive", lambda t: {"input": t}, naive_texts, concurrency))
            before = embedder.batch_stats.remote().result()
            started = time.perf_counter()
            rate, latency, vectors = asyncio.run(
                drive(f"{base}/v1/embeddings", lambda t: {"model": "minilm", "input": t}, batch_texts, concurrency)
            )
            wall = time.perf_counter() - started
            after = embedder.batch_stats.remote().result()
            error = float(np.abs(np.asarray(vectors, dtype=np.float32) - reference[: len(batch_texts)]).max())
            assert error < 1e-4, f"served vectors differ from in-process ones by {error}"
            delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
            rows.append(
                [
                    concurrency,
                    rate,
                    baseline,
                    rate / baseline,
                    rate / naive_rate,
                    percentile(latency, 50),
                    percentile(latency, 99),
                    percentile(naive_latency, 50),
                    percentile(naive_latency, 99),
                    naive_rate,
                ]
            )
            profile.append(
                [
                    concurrency,
                    delta["rows"] / max(delta["batches"], 1),
                    delta["forward_s"] / wall,
                    delta["tokenize_s"] / wall,
                    delta["real_tokens"] / max(delta["padded_tokens"], 1),
                    (wall - delta["forward_s"]) / len(batch_texts) * 1000,
                ]
            )
            write_report(rows, profile, single, load_before)
            print(f"concurrency {concurrency}: served {rate:.0f}/s, naive {naive_rate:.0f}/s, in-process {baseline:.0f}/s", flush=True)
    finally:
        stop_local()
        ray.shutdown()


def write_report(rows: list[list], profile: list[list], single: list[float], load_before: float) -> None:
    """Rewrite the section after every concurrency level, so a cut-short run still leaves figures."""
    body = (
        f"all-MiniLM-L6-v2 on CPU, one SciFact claim per request, {THREADS} torch threads everywhere, batch size {BATCH_SIZE}. "
        f"In-process `SentenceTransformer.encode` (batch {BATCH_SIZE}) is re-measured on the same texts right before "
        f"each served run (best of 2); one text alone in-process: p50 {percentile(single, 50):.1f} ms.\n\n"
        + markdown_table(
            ["concurrency", "served texts/s", "in-process texts/s", "vs in-process", "vs naive", "p50 ms", "p99 ms", "naive p50 ms", "naive p99 ms", "naive texts/s"],
            rows,
        )
        + "\n\nWhere the time goes (embedder replica counters over each served run):\n\n"
        + markdown_table(
            ["concurrency", "rows per forward", "forward share of wall", "tokenize share of wall", "real/padded tokens", "non-forward ms per text"],
            profile,
        )
        + "\n\nThe load generator, the HTTP proxy, the ingress and the replica share the same cores, so on this "
        "machine every millisecond of per-request work outside the forward pass is taken from the model. "
        f"1-minute load average before the run: {load_before:.1f} on {THREADS} cores"
        + (
            " (other jobs shared the machine, so absolute rates are far below an idle machine's; the ratios are "
            "against baselines measured minutes apart under similar load)."
            if load_before > THREADS
            else " (an otherwise idle machine)."
        )
    )
    write_section("serving", "Serving (Ray Serve, MiniLM)", "python tests/benchmarks/bench_serving.py", body)


if __name__ == "__main__":
    main()
