"""Synthesis throughput on SciFact: the Ray Data pipeline with 1 and 2 generator actors.

Run: ``make bench`` (or ``python tests/benchmarks/bench_synthesis.py``). Writes the
``synthesis`` section of ``docs/benchmarks.md``:

synthesis rows/s with the ``hf`` engine (tiny random Qwen3) for 1 and 2 generator actors.
Mining has its own benchmark, ``bench_mining.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for entry in (REPO, REPO / "platform"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.benchmarks.report import markdown_table, write_section  # noqa: E402

SYNTH_DOCS = int(os.environ.get("BENCH_SYNTH_DOCS", "12"))


def synthesis_rows_per_second(workdir: Path, actors: int) -> dict:
    from embedforge.config import parse_config
    from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize

    config = parse_config(
        {
            "output_dir": str(workdir / f"synth-{actors}"),
            "corpus": {"paths": ["${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"], "max_docs": SYNTH_DOCS, "chunk_tokens": 512},
            "generator": {"model": "tiny-qwen3-random", "max_new_tokens": 32, "hf": {"concurrency": actors, "num_cpus": 0.5, "batch_size": 4, "max_attempts": 1}},
            "teacher": {"num_cpus": 0.5, "batch_size": 4},
            "shard_size": 8,
            "ray_data": {"rows_per_block": 4},
        },
        SynthesizeConfig,
    )
    started = time.perf_counter()
    stats = run_synthesize(config)
    seconds = time.perf_counter() - started
    return {"rows": stats["attempted"], "seconds": seconds, "rows_per_s": stats["attempted"] / seconds}


def main() -> None:
    import ray

    load_before = os.getloadavg()[0]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="bench-synthesis-") as tmp:
        workdir = Path(tmp)
        synth = {actors: synthesis_rows_per_second(workdir, actors) for actors in (1, 2)}
    ray.shutdown()
    load_line = f"Machine load average (1 min) {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end of the run."
    synth_table = markdown_table(
        ["generator actors", "records", "seconds", "rows/s", "vs 1 actor"],
        [[a, r["rows"], round(r["seconds"], 1), round(r["rows_per_s"], 3), round(r["rows_per_s"] / synth[1]["rows_per_s"], 2)] for a, r in synth.items()],
    )
    body = f"""Synthesis with the `hf` engine: the tiny random Qwen3 (32 new tokens, batch 4) on {SYNTH_DOCS}
SciFact documents, 0.5 CPU per actor, wall time of `run_synthesize` including actor start-up
and the persona and teacher stages. A random generator fails the brief step, so the
query step does no work: these rows/s measure the pipeline and one generation per record.

{synth_table}

{load_line} Compare ratios within this run only. Hard-negative mining is measured by
`bench_mining.py` (its own section)."""
    write_section("synthesis", "Synthesis", "python tests/benchmarks/bench_synthesis.py", body)
    print(body)


if __name__ == "__main__":
    main()
