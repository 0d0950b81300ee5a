"""Synthesis and mining throughput on SciFact: Ray Data pipelines against a plain loop.

Run: ``make bench`` (or ``python tests/benchmarks/bench_synthesis.py``). Writes the
``synthesis`` section of ``docs/benchmarks.md``:

- synthesis rows/s with the ``hf`` engine (tiny random Qwen3) for 1 and 2 generator actors;
- corpus embedding + mining docs/s of ``run_mining`` as a ratio to a plain single-process
  loop (sentence-transformers ``encode`` + faiss exact search) on the same data, same run.
"""

from __future__ import annotations

import json
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
MINE_DOCS = int(os.environ.get("BENCH_MINE_DOCS", "300"))


def synthesis_rows_per_second(workdir: Path, actors: int) -> dict:
    from embedforge.config import parse_config
    from embedforge.synthesis.generate import SynthesisConfig, run_synthesis

    config = parse_config(
        {
            "output_dir": str(workdir / f"synth-{actors}"),
            "corpus": {"paths": ["${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"], "max_docs": SYNTH_DOCS, "chunk_tokens": 512},
            "generator": {"model": "tiny-qwen3-random", "max_new_tokens": 32, "hf": {"concurrency": actors, "num_cpus": 0.5, "batch_size": 4, "max_attempts": 1}},
            "teacher": {"num_cpus": 0.5, "batch_size": 4},
            "shard_size": 8,
            "ray": {"rows_per_block": 4},
        },
        SynthesisConfig,
    )
    started = time.perf_counter()
    stats = run_synthesis(config)
    seconds = time.perf_counter() - started
    return {"rows": stats["attempted"], "seconds": seconds, "rows_per_s": stats["attempted"] / seconds}


def scifact_subset(workdir: Path) -> tuple[Path, Path]:
    from embedforge.paths import shared_data_dir

    data = shared_data_dir() / "retrieval" / "scifact"
    qrels_lines = (data / "qrels" / "train.tsv").read_text().splitlines()
    corpus_lines = (data / "corpus.jsonl").read_text().splitlines()
    wanted = {line.split("\t")[1] for line in qrels_lines[1:121]}
    chosen = [line for line in corpus_lines if json.loads(line)["_id"] in wanted]
    chosen += [line for line in corpus_lines if json.loads(line)["_id"] not in wanted][: MINE_DOCS - len(chosen)]
    (workdir / "corpus.jsonl").write_text("\n".join(chosen) + "\n")
    (workdir / "qrels.tsv").write_text("\n".join(qrels_lines[:121]) + "\n")
    return workdir / "corpus.jsonl", workdir / "qrels.tsv"


def mining_docs_per_second(workdir: Path, corpus: Path, qrels: Path) -> dict:
    from embedforge.paths import shared_data_dir
    from embedforge.synthesis.mining import MiningConfig, run_mining

    config = MiningConfig.model_validate(
        {
            "output_dir": str(workdir / "mined"),
            "labelled": {"queries": str(shared_data_dir() / "retrieval/scifact/queries.jsonl"), "qrels": str(qrels)},
            "corpus": {"paths": [str(corpus)], "chunk_tokens": 256},
            "teacher": {"model": "all-MiniLM-L6-v2", "batch_size": 32, "num_cpus": 2.0},  # both cores, as the plain loop has
            "index": {"kind": "flat"},
            "num_negatives": 7,
        }
    )
    started = time.perf_counter()
    stats = run_mining(config)
    seconds = time.perf_counter() - started
    return {"docs": stats["passages"], "pairs": stats["pairs"], "seconds": seconds, "docs_per_s": stats["passages"] / seconds}


def plain_loop_docs_per_second(corpus: Path, qrels: Path) -> dict:
    """The baseline: one process, sentence-transformers encode + faiss exact top-k."""
    import faiss
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from embedforge.data.beir import load_qrels, load_queries
    from embedforge.models.registry import resolve_model
    from embedforge.paths import shared_data_dir
    from embedforge.synthesis.corpus import CorpusConfig, read_passages

    started = time.perf_counter()
    passages, _ = read_passages(CorpusConfig(paths=[corpus], chunk_tokens=256))
    queries, judged = load_queries(shared_data_dir() / "retrieval/scifact/queries.jsonl"), load_qrels(qrels)
    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 256
    vectors = model.encode([p["passage"] for p in passages], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    query_vectors = model.encode([queries[q] for q in judged], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), 58)
    seconds = time.perf_counter() - started
    return {"docs": len(passages), "seconds": seconds, "docs_per_s": len(passages) / seconds}


def main() -> None:
    import ray

    load_before = os.getloadavg()[0]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="bench-synthesis-") as tmp:
        workdir = Path(tmp)
        synth = {actors: synthesis_rows_per_second(workdir, actors) for actors in (1, 2)}
        corpus, qrels = scifact_subset(workdir)
        baseline = plain_loop_docs_per_second(corpus, qrels)
        mining = mining_docs_per_second(workdir, corpus, qrels)
    ray.shutdown()
    load_line = f"Machine load average (1 min) {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end of the run."
    synth_table = markdown_table(
        ["generator actors", "records", "seconds", "rows/s", "vs 1 actor"],
        [[a, r["rows"], round(r["seconds"], 1), round(r["rows_per_s"], 3), round(r["rows_per_s"] / synth[1]["rows_per_s"], 2)] for a, r in synth.items()],
    )
    mine_table = markdown_table(
        ["pipeline", "passages", "seconds", "docs/s", "ratio to plain loop"],
        [
            ["plain loop: sentence-transformers encode + faiss (1 process)", baseline["docs"], round(baseline["seconds"], 1), round(baseline["docs_per_s"], 2), 1.0],
            ["run_mining: Ray Data teacher actors + faiss + selection", mining["docs"], round(mining["seconds"], 1), round(mining["docs_per_s"], 2), round(mining["docs_per_s"] / baseline["docs_per_s"], 2)],
        ],
    )
    body = f"""Synthesis with the `hf` engine: the tiny random Qwen3 (32 new tokens, batch 4) on {SYNTH_DOCS}
SciFact documents, 0.5 CPU per actor, wall time of `run_synthesis` including actor start-up
and the persona and teacher stages. A random generator fails the configuration step, so the
query step does no work: these rows/s measure the pipeline and one generation per record.

{synth_table}

Corpus embedding + mining (one 2-CPU MiniLM teacher actor, as many threads as the plain loop; exact index, 7 negatives per pair) on a SciFact
subset ({baseline["docs"]} passages, the first 120 train judgements). Both sides include reading and
chunking the corpus and encoding the queries; `run_mining` also scores every positive and
writes shards, the plain loop does not.

{mine_table}

{load_line} Compare ratios within this run only. On 2 cores the Ray pipeline pays process
and actor start-up with no extra hardware to win it back; whether it scales with more
teacher actors, nodes or GPUs was not measured here."""
    write_section("synthesis", "Synthesis and hard-negative mining", "python tests/benchmarks/bench_synthesis.py", body)
    print(body)


if __name__ == "__main__":
    main()
