"""Filter + dedup at scale on generated rows: seconds per row and the driver's peak memory.

Run: ``python tests/benchmarks/bench_filter_scale.py [--sizes 10000 100000 1000000]``. Writes
the ``filter_scale`` section of ``docs/benchmarks.md`` and prints its table.

Rows are random word queries from a 5,000-word vocabulary, 8-14 words each, in input shards
of 10,000 rows; 8% are exact duplicates of an earlier query (case and punctuation changed),
8% near duplicates (an earlier query with one word added: Jaccard 0.89-0.93), 2% too short,
and 10% score at or below the 0.7 band. Every row carries a ``teacher_score`` recorded by the
filter's own teacher, so nothing is re-scored and no model is loaded: the run measures the
text-level steps (Ray Data reading, rules, MinHash/LSH, the bucket groupby, the sort and the
shard writing).

Each size runs in a fresh Python process (its own local Ray with 4 logical CPUs), so the
driver figures are comparable: a thread reads the driver's ``/proc/self/status`` every
50 ms during ``run_filter`` (:func:`memory`); the table gives the values just before the run
(Ray already started) and their peaks, split into private memory (``RssAnon``) and Ray
object-store pages mapped into the driver (``RssShmem``). Ray's worker processes are not
counted: the claim is that the driver, which only aggregates counts, stays flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for entry in (REPO, REPO / "platform"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARD_ROWS = 10_000
SHARES = {"exact": 0.08, "near": 0.08, "short": 0.02, "low_score": 0.10}


def generate(folder: Path, rows: int, seed: int = 0) -> dict:
    """Write ``rows`` generated pairs as finished input shards; returns the planted counts."""
    import numpy as np
    import pyarrow as pa

    from embedforge.synthesis.filter import ROW_SCHEMA
    from embedforge.synthesis.shards import PAIR_SCHEMA, REJECT_SCHEMA, check_manifest, write_arrow_shard
    from embedforge.synthesis.teacher import TeacherConfig, configured_identity

    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(5000)]
    identity = configured_identity(TeacherConfig())
    check_manifest(folder, {"stage": "generated", "fingerprint": f"bench-{rows}-{seed}", "records": rows})
    recent: list[str] = []
    planted = {name: 0 for name in SHARES}
    for shard, start in enumerate(range(0, rows, SHARD_ROWS)):
        queries, scores = [], []
        for _ in range(min(SHARD_ROWS, rows - start)):
            draw = rng.random()
            if draw < SHARES["exact"] and recent:
                query = recent[int(rng.integers(len(recent)))].upper() + "?"
                planted["exact"] += 1
            elif draw < SHARES["exact"] + SHARES["near"] and recent:
                query = recent[int(rng.integers(len(recent)))] + " " + vocabulary[int(rng.integers(len(vocabulary)))]
                planted["near"] += 1
            elif draw < SHARES["exact"] + SHARES["near"] + SHARES["short"]:
                query = vocabulary[int(rng.integers(len(vocabulary)))]
                planted["short"] += 1
            else:
                query = " ".join(vocabulary[j] for j in rng.integers(0, len(vocabulary), size=int(rng.integers(8, 15))).tolist())
                recent = (recent + [query])[-1000:]
            low = rng.random() < SHARES["low_score"]
            planted["low_score"] += int(low)
            queries.append(query)
            scores.append(float(rng.uniform(0.3, 0.7) if low else rng.uniform(0.71, 0.99)))
        n = len(queries)
        ids = [f"gen-{start + i:09d}" for i in range(n)]
        table = pa.table(
            {
                "id": ids,
                "query": queries,
                "positive": [f"passage {i % 997}: " + " ".join(vocabulary[(i * 7 + k) % 5000] for k in range(30)) for i in range(start, start + n)],
                "teacher_score": pa.array(scores, pa.float32()),
                "teacher_model": [identity] * n,
            }
        )
        from embedforge.synthesis.filter import conform

        write_arrow_shard(folder, shard, conform(table, ROW_SCHEMA).cast(PAIR_SCHEMA), REJECT_SCHEMA.empty_table(), {"pairs": n})
    return planted


def memory() -> dict:
    """This process's resident memory, in bytes: all of it (``VmRSS``), its private anonymous
    pages (``RssAnon``: heap, Arrow buffers it owns) and shared-memory pages (``RssShmem``:
    Ray object-store objects it has read, which stay mapped until the store reuses them)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssShmem"):
            fields[name] = int(value.split()[0]) * 1024
    return {"rss": fields["VmRSS"], "private": fields["RssAnon"], "shared": fields["RssShmem"]}


def measure(input_dir: Path, output_dir: Path) -> dict:
    """Run the filter in this (fresh) process and sample its RSS."""
    import ray

    from embedforge.synthesis.filter import FilterConfig, run_filter

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    baseline = memory()
    peak, stop = dict(baseline), threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for name, value in memory().items():
                peak[name] = max(peak[name], value)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    config = FilterConfig.model_validate({"input_dir": str(input_dir), "output_dir": str(output_dir), "shard_size": 10_000})
    started = time.perf_counter()
    stats = run_filter(config)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    ray.shutdown()
    return {
        "rows": stats["input"],
        "seconds": seconds,
        "step_seconds": stats.get("step_seconds", {}),
        "kept": stats["kept"],
        "removed_by_reason": stats["removed_by_reason"],
        "baseline_mb": baseline["rss"] / 2**20,
        "peak_mb": peak["rss"] / 2**20,
        "baseline_private_mb": baseline["private"] / 2**20,
        "peak_private_mb": peak["private"] / 2**20,
        "peak_shared_mb": peak["shared"] / 2**20,
    }


def run_size(rows: int, workdir: Path) -> dict:
    input_dir, output_dir = workdir / f"in-{rows}", workdir / f"out-{rows}"
    started = time.perf_counter()
    planted = generate(input_dir, rows)
    generated = time.perf_counter() - started
    child = subprocess.run([sys.executable, __file__, "--measure", str(input_dir), str(output_dir)], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=f"{REPO / 'platform'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"))
    if child.returncode != 0:
        raise RuntimeError(f"measuring {rows} rows failed:\n{child.stderr[-4000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return dict(result, planted=planted, generate_seconds=generated, load=list(os.getloadavg()))


def render(results: list[dict]) -> str:
    """The section's table and notes from :func:`run_size` results."""
    from tests.benchmarks.report import markdown_table

    table = markdown_table(
        ["rows", "seconds", "µs per row", "rows / dedup / write (s)", "driver RSS before → peak (MiB)", "of it private, RssAnon (MiB)", "of it shared, RssShmem peak (MiB)", "kept", "exact dup", "near dup", "too short", "score low", "load (1/5/15 min)"],
        [
            [
                r["rows"],
                round(r["seconds"], 1),
                int(round(r["seconds"] / r["rows"] * 1e6)),
                " / ".join(str(round(r.get("step_seconds", {}).get(step, float("nan")), 1)) for step in ("rows", "duplicates", "write")),
                f"{r['baseline_mb']:.0f} → {r['peak_mb']:.0f}",
                f"{r['baseline_private_mb']:.0f} → {r['peak_private_mb']:.0f}" if "peak_private_mb" in r else "?",
                f"{r['peak_shared_mb']:.0f}" if "peak_shared_mb" in r else "?",
                r["kept"],
                r["removed_by_reason"].get("exact_duplicate", 0),
                r["removed_by_reason"].get("near_duplicate", 0),
                r["removed_by_reason"].get("too_short", 0),
                r["removed_by_reason"].get("teacher_score_low", 0),
                " / ".join(f"{value:.1f}" for value in r.get("load", [])) or "?",
            ]
            for r in results
        ],
    )
    body = (
        f"{table}\n\nLoad: the machine's load average when each size finished. "
        "Generated rows (`bench_filter_scale.generate`): random word queries with 8% exact and 8% near duplicates planted, "
        "2% too short, 10% below the 0.7 score band; every score reusable, so no model is loaded. "
        "Driver memory is read from `/proc/self/status` every 50 ms in the driver process during `run_filter` (Ray workers "
        "not counted; the RSS before includes Ray's client and the imports): `RssAnon` is the driver's own memory, `RssShmem` "
        "the Ray object-store pages it has read (the blocks streamed to it), which stay mapped until the store reuses them: "
        "they grow with the data streamed until they reach the object store's size, and are the store's memory, not the driver's."
    )
    ordered = sorted(results, key=lambda r: r["rows"])
    if len(ordered) >= 2:
        small, large = ordered[-2], ordered[-1]
        marginal = (large["seconds"] - small["seconds"]) / (large["rows"] - small["rows"]) * 1e6
        body += (
            f" From {small['rows']:,} to {large['rows']:,} rows each extra row cost {marginal:.0f} µs, and seconds per row went "
            f"from {small['seconds'] / small['rows'] * 1e6:.0f} to {large['seconds'] / large['rows'] * 1e6:.0f} µs "
            f"(x{(large['seconds'] / large['rows']) / (small['seconds'] / small['rows']):.2f}): fixed costs (Ray Data starting each "
            f"of the stage's four executions; {ordered[0]['rows']:,} rows took {ordered[0]['seconds']:.0f} s) dominate the smaller sizes."
        )
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--measure", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave docs/benchmarks.md alone")
    parser.add_argument("--from-results", type=Path, help="render JSON lines saved from an earlier run instead of running")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    from tests.benchmarks.report import write_section

    results = [json.loads(line) for line in args.from_results.read_text().splitlines() if line.startswith("{")] if args.from_results else []
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
        for rows in [] if args.from_results else args.sizes:
            result = run_size(rows, Path(tmp))
            results.append(result)
            print(json.dumps(result), flush=True)
    body = render(results)
    print(body)
    if not args.no_write:
        write_section("filter_scale", "Filter scale: MinHash/LSH dedup on Ray Data", "python tests/benchmarks/bench_filter_scale.py --sizes " + " ".join(str(r["rows"]) for r in results), body)


if __name__ == "__main__":
    main()
