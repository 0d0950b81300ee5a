"""Serving throughput and latency for MiniLM: embedforge serve against in-process and a naive deployment.

One run, the same texts for every target, the load generator on the same machine:

- in-process ``SentenceTransformer.encode(batch_size=32)`` with the best of 1 and all torch
  threads (no HTTP at all), re-measured right before each served run;
- a naive Serve deployment (one replica, each request encoded alone as it arrives), on the
  same Ray and the same proxy mode as embedforge;
- ``embedforge serve`` (``start_local``) with its defaults.

Loads: 1 text/request at concurrency 1, 8 and 32; 32 texts/request at concurrency 4; the
reranker (a MiniLM cross-encoder) with 1 query x 20 documents/request at concurrency 8,
against in-process ``CrossEncoder.predict`` on the same pairs; and the same cross-encoder with
a prior (MiniLM cosine / 0.05 + 0.2 x BM25, as the presets train), against embedforge's own
in-process ``score`` one query at a time (cross-encoder and prior). It also records rows per
forward pass (the replica's counters) and CPU-ms per request of every process involved,
so the next bottleneck is visible.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_serving.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "platform"), str(REPO_ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embedforge.serving.app import use_fast_path  # noqa: E402

use_fast_path()

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

from tests.benchmarks.report import markdown_table, write_section  # noqa: E402

SINGLE = {1: 48, 8: 240, 32: 640}  # requests of one text at each concurrency
NAIVE = {1: 24, 8: 96, 32: 192}
MULTI_CONCURRENCY, MULTI_TEXTS, MULTI_REQUESTS = 4, 32, 48
RERANK_CONCURRENCY, RERANK_DOCS, RERANK_REQUESTS = 8, 20, 24
IN_PROCESS_BATCH = 32
PRIOR_APP = "embedforge-reranker-prior"  # its replicas count as "reranker replica" below
CORES = os.cpu_count() or 1
THREADS = os.environ.get("BENCH_THREADS")
REPLICAS = int(os.environ.get("BENCH_REPLICAS", "0")) or None  # experiments: BENCH_REPLICAS, BENCH_THREADS
EXPERIMENT = {f"{kind}_batching": {"torch_threads": int(THREADS)} for kind in ("embedder", "reranker")} if THREADS else {}


@serve.deployment(name="Naive", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class NaiveEmbedder:
    """The baseline: each request encoded alone, in the order it arrives."""

    def __init__(self, model: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model, device="cpu")

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        return {"data": [{"embedding": self.model.encode([body["input"]])[0].tolist()}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scifact(name: str, count: int, field: str = "text") -> list[str]:
    from embedforge.paths import shared_data_dir

    with open(shared_data_dir() / "retrieval" / "scifact" / name) as lines:
        return [json.loads(line)[field] for line, _ in zip(lines, range(count))]


async def drive(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float], list[dict]]:
    """Closed loop: ``concurrency`` clients post ``bodies`` in order, after ``concurrency`` warm-up requests.

    Returns (seconds, latencies, responses) of the measured requests.
    """
    pending: list[tuple[int, dict]] = []
    latencies, responses = [], [None] * len(bodies)

    async def client(http: aiohttp.ClientSession) -> None:
        while pending:
            index, body = pending.pop()
            start = time.perf_counter()
            async with http.post(url, json=body) as response:
                payload = await response.json()
                assert response.status == 200, payload
            latencies.append(time.perf_counter() - start)
            responses[index] = payload

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:
        pending[:] = list(enumerate(bodies[:concurrency]))
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        pending[:] = list(enumerate(bodies))[::-1]
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return time.perf_counter() - start, latencies, responses


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


class CPUMeter:
    """CPU seconds of the processes that serve a request, grouped by role, between two snapshots."""

    ROLES = (("haproxy", "HAProxy"), ("ServeReplica:embedforge-reranker", "reranker replica"), ("ServeReplica:embedforge", "embedder replica"), ("ServeReplica:naive", "naive replica"), ("ProxyActor", "Serve proxy"), ("ServeController", "Serve controller"))

    def role(self, process: psutil.Process) -> str | None:
        if process.pid == os.getpid():
            return "load generator"
        try:
            text = " ".join(process.cmdline()) or process.name()
        except psutil.Error:
            return None
        return next((role for key, role in self.ROLES if key in text), None)

    def snapshot(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for process in psutil.process_iter():
            role = self.role(process)
            if role is not None:
                try:
                    times = process.cpu_times()
                    seen[process.pid] = (role, times.user + times.system)
                except psutil.Error:
                    pass
        return seen

    @staticmethod
    def per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (role, seconds) in after.items():
            totals[role] = totals.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
        return {role: 1000 * seconds / requests for role, seconds in totals.items() if seconds > 0}


def best_in_process(encode, items, thread_counts) -> tuple[float, int]:
    """Items/s of the best thread count (best of 2 runs each); restores all threads after."""
    best = (0.0, 1)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for _ in range(2):
            start = time.perf_counter()
            encode(items)
            best = max(best, (len(items) / (time.perf_counter() - start), threads))
    torch.set_num_threads(CORES)
    return best


def main() -> None:
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from embedforge.config import parse_config
    from embedforge.models.prior import FirstStagePrior
    from embedforge.models.registry import resolve_model
    from embedforge.models.reranker import load_reranker
    from embedforge.serving.app import default_replicas, reranker_app, start_local, stop_local
    from embedforge.serving.settings import ServeSettings

    load_before = os.getloadavg()[0]
    model_dir = str(resolve_model("all-MiniLM-L6-v2"))
    claims = scifact("queries.jsonl", max(SINGLE.values()))
    passages = scifact("corpus.jsonl", RERANK_DOCS * 4)
    reranker_dir = Path(tempfile.mkdtemp(prefix="bench-reranker-"))
    load_reranker(model_dir, device="cpu", new_head=True).save(reranker_dir)  # MiniLM cross-encoder: real cost, untrained head
    prior_dir = Path(tempfile.mkdtemp(prefix="bench-prior-reranker-"))
    judge = load_reranker(reranker_dir, device="cpu")
    judge.prior = FirstStagePrior.build(model_dir, scifact("corpus.jsonl", 2000), 20.0, 0.2)
    judge.save(prior_dir)
    judge = load_reranker(prior_dir, device="cpu")

    in_process = SentenceTransformer(model_dir, device="cpu")
    reference = in_process.encode(claims, batch_size=IN_PROCESS_BATCH)
    cross = CrossEncoder(str(reranker_dir), device="cpu")
    threads = sorted({1, CORES})

    def encode(texts):
        return in_process.encode(texts, batch_size=IN_PROCESS_BATCH)

    ray.init(num_cpus=max(8, 4 * CORES), include_dashboard=False, log_to_driver=False, configure_logging=False)
    url = start_local(
        {"embedder": model_dir, "embedder_name": "minilm", "reranker": str(reranker_dir), "reranker_name": "rerank", "api_key_env": "EMBEDFORGE_BENCH_UNSET", **EXPERIMENT},
        port=free_port(),
        replicas=REPLICAS or default_replicas(),
    )
    serve.run(NaiveEmbedder.bind(model_dir), name="naive", route_prefix="/naive", blocking=False)
    prior_settings = parse_config({"embedder": model_dir, "reranker": str(prior_dir), "reranker_name": "rerank", "api_key_env": "EMBEDFORGE_BENCH_UNSET", **EXPERIMENT}, ServeSettings, "bench")
    serve.run(reranker_app(prior_settings, REPLICAS or default_replicas()), name=PRIOR_APP, route_prefix="/prior", blocking=False)
    try:
        asyncio.run(measure(url, encode, cross, judge, claims, passages, reference, threads, load_before, REPLICAS or default_replicas()))
    finally:
        stop_local()
        ray.shutdown()


async def measure(url, encode, cross, judge, claims, passages, reference, threads, load_before, replicas) -> None:
    """Every served run, in one event loop: Serve's fast path routes handle calls on the caller's loop."""
    embedder = serve.get_deployment_handle("Embedder", "embedforge")
    reranker = serve.get_deployment_handle("Reranker", "embedforge-reranker")
    meter = CPUMeter()
    rows, cpu_rows, notes = [], [], {"in-process threads": {}, "replicas": replicas, "torch threads": THREADS or 1}

    async def served(label: str, handle, path: str, bodies: list[dict], concurrency: int, items: int, baseline: float):
        before, stats_before = meter.snapshot(), (await handle.batch_stats.remote()) if handle else {}
        seconds, latencies, responses = await drive(f"{url}{path}", bodies, concurrency)
        after, stats_after = meter.snapshot(), (await handle.batch_stats.remote()) if handle else {}
        delta = {key: stats_after.get(key, 0) - stats_before.get(key, 0) for key in stats_after}
        rate = items / seconds
        rows.append([label, concurrency, rate, baseline, rate / baseline, ms(latencies, 50), ms(latencies, 99), delta.get("rows", 0) / max(delta.get("forward_passes", 0), 1) if handle else None])
        cpu = meter.per_request(before, after, len(bodies) + concurrency)  # with the warm-up requests
        cpu_rows.append([label, concurrency] + [cpu.get(role) for role in CPU_COLUMNS])
        print(f"{label} c={concurrency}: {rate:.0f} items/s ({rate / baseline:.2f}x in-process), p50 {ms(latencies, 50):.1f} ms, p99 {ms(latencies, 99):.1f} ms", flush=True)
        write_report(rows, cpu_rows, notes, load_before)
        return responses

    for concurrency in SINGLE:
        texts = claims[: SINGLE[concurrency]]
        rate, best = best_in_process(encode, texts, threads)
        notes["in-process threads"][f"1 text c={concurrency}"] = best
        await served("naive, 1 text", None, "/naive", [{"input": t} for t in texts[: NAIVE[concurrency]]], concurrency, NAIVE[concurrency], rate)
        responses = await served("embedforge, 1 text", embedder, "/v1/embeddings", [{"model": "minilm", "input": t} for t in texts], concurrency, len(texts), rate)
        vectors = np.asarray([r["data"][0]["embedding"] for r in responses], dtype=np.float32)
        error = float(np.abs(vectors - reference[: len(texts)]).max())
        assert error < 1e-4, f"served vectors differ from in-process ones by {error}"
        notes["max abs difference to in-process"] = max(notes.get("max abs difference to in-process", 0.0), error)

    groups = [claims[i * MULTI_TEXTS : (i + 1) * MULTI_TEXTS] for i in range(len(claims) // MULTI_TEXTS)][:MULTI_REQUESTS]
    groups = (groups * MULTI_REQUESTS)[:MULTI_REQUESTS]
    rate, best = best_in_process(encode, [t for g in groups for t in g], threads)
    notes["in-process threads"][f"{MULTI_TEXTS} texts c={MULTI_CONCURRENCY}"] = best
    await served(f"embedforge, {MULTI_TEXTS} texts", embedder, "/v1/embeddings", [{"model": "minilm", "input": g} for g in groups], MULTI_CONCURRENCY, MULTI_TEXTS * len(groups), rate)

    queries = [(claims[i], [passages[(i + j) % len(passages)] for j in range(RERANK_DOCS)]) for i in range(RERANK_REQUESTS)]
    pairs = [(query, document) for query, documents in queries for document in documents]
    rate, best = best_in_process(lambda items: cross.predict(items, batch_size=IN_PROCESS_BATCH), pairs, threads)
    notes["in-process threads"][f"rerank c={RERANK_CONCURRENCY}"] = best
    bodies = [{"query": q, "documents": d} for q, d in queries]
    await served(f"embedforge rerank, 1 query x {RERANK_DOCS} docs (pairs/s)", reranker, "/v1/rerank", bodies, RERANK_CONCURRENCY, len(pairs), rate)

    rate, best = best_in_process(lambda items: [judge.score(q, d, batch_size=IN_PROCESS_BATCH) for q, d in items], queries, threads)
    notes["in-process threads"][f"rerank with a prior c={RERANK_CONCURRENCY}"] = best
    prior_reranker = serve.get_deployment_handle("Reranker", PRIOR_APP)
    await served(f"embedforge rerank with a prior, 1 query x {RERANK_DOCS} docs (pairs/s)", prior_reranker, "/prior", bodies, RERANK_CONCURRENCY, len(pairs), rate * RERANK_DOCS)
    from ray.serve.context import _get_global_client

    await _get_global_client().shutdown_cached_handles_async()  # on this loop, before it closes




CPU_COLUMNS = ["load generator", "HAProxy", "Serve proxy", "embedder replica", "reranker replica", "naive replica", "Serve controller"]


def write_report(rows: list[list], cpu_rows: list[list], notes: dict, load_before: float) -> None:
    """Rewrite the section after every run, so a cut-short run still leaves figures."""
    body = (
        f"all-MiniLM-L6-v2 on CPU ({CORES} cores), SciFact claims as texts, SciFact abstracts as rerank documents. "
        f"`embedforge serve`: {notes['replicas']} replicas per model (default: one per core), each `num_cpus: 1` and "
        f"{notes['torch threads']} torch thread(s), on Serve's HAProxy fast path. The naive deployment (one replica) runs on the same Ray and proxy mode. In-process is "
        f"`SentenceTransformer.encode(batch_size={IN_PROCESS_BATCH})` (rerank: `CrossEncoder.predict`, same batch; rerank with a prior: "
        f"embedforge's `load_reranker(folder).score`, one query at a time, the cross-encoder and its prior) "
        f"on the same items, best of {sorted({1, CORES})} torch threads, re-measured right before each served run "
        f"(best thread counts: {notes['in-process threads']}). Items are texts (rerank: query-document pairs).\n\n"
        + markdown_table(["load", "concurrency", "served items/s", "in-process items/s", "vs in-process", "p50 ms", "p99 ms", "rows per forward"], rows)
        + "\n\nCPU-ms per request, by process (user + system time over the run, divided by its requests):\n\n"
        + markdown_table(["load", "concurrency", *CPU_COLUMNS], cpu_rows)
        + f"\n\nServed vectors against in-process ones: max abs difference {notes.get('max abs difference to in-process', float('nan')):.2e}. "
        f"1-minute load average before the run: {load_before:.1f} on {CORES} cores"
        + (" (other jobs shared the machine)." if load_before > CORES else " (an otherwise idle machine).")
    )
    write_section("serving", "Serving (Ray Serve, MiniLM)", "python tests/benchmarks/bench_serving.py", body)


if __name__ == "__main__":
    main()
