"""Hard-negative mining throughput on SciFact: ``embedforge mine`` against a plain loop.

Run: ``python tests/benchmarks/bench_mining.py`` (part of ``make bench``). Writes the
``mining`` section of ``docs/benchmarks.md``.

Both sides mine the same SciFact corpus (all 5,183 abstracts; ``BENCH_MINE_DOCS=N`` takes
the judged documents plus others up to N) for the same train queries, with the same torch
threads (``BENCH_THREADS``, default every core), in one process, one after the other:

- the plain loop: read and chunk the corpus, sentence-transformers ``encode`` of the
  passages and the distinct queries, a faiss ``IndexFlatIP`` top-k search;
- ``embedforge mine``: ``run_mine`` on a config loaded from YAML exactly as the CLI does,
  starting its own local Ray, one teacher actor holding the same CPUs, ``index: auto``.

``BENCH_REPEATS=N`` alternates the two sides N times and keeps each side's best run.
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

MINE_DOCS = int(os.environ.get("BENCH_MINE_DOCS", "0"))
THREADS = int(os.environ.get("BENCH_THREADS", str(os.cpu_count() or 1)))
REPEATS = int(os.environ.get("BENCH_REPEATS", "1"))
CHUNK_TOKENS = 512
TOP_K = 50


def scifact_inputs(workdir: Path) -> tuple[Path, Path, Path]:
    """The corpus (whole, or the judged documents plus others up to ``MINE_DOCS``), train qrels and queries."""
    from embedforge.paths import shared_data_dir

    data = shared_data_dir() / "retrieval" / "scifact"
    qrels = data / "qrels" / "train.tsv"
    if not MINE_DOCS:
        return data / "corpus.jsonl", qrels, data / "queries.jsonl"
    lines = (data / "corpus.jsonl").read_text().splitlines()
    judged = {line.split("\t")[1] for line in qrels.read_text().splitlines()[1:]}
    chosen = [line for line in lines if json.loads(line)["_id"] in judged]
    chosen += [line for line in lines if json.loads(line)["_id"] not in judged][: max(0, MINE_DOCS - len(chosen))]
    (workdir / "corpus.jsonl").write_text("\n".join(chosen) + "\n")
    return workdir / "corpus.jsonl", qrels, data / "queries.jsonl"


def plain_loop(corpus: Path, qrels: Path, queries_file: Path) -> dict:
    """One process: sentence-transformers encode of passages and distinct queries, faiss exact top-k."""
    import faiss
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from embedforge.data.beir import load_qrels, load_queries
    from embedforge.models.registry import resolve_model
    from embedforge.synthesis.corpus import CorpusConfig, read_passages

    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    passages, _ = read_passages(CorpusConfig(paths=[corpus], chunk_tokens=CHUNK_TOKENS))
    queries, judged = load_queries(queries_file), load_qrels(qrels)
    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2")), device="cpu")
    vectors = model.encode([p["passage"] for p in passages], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    query_vectors = model.encode([queries[q] for q in sorted(judged) if q in queries], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), TOP_K + 8)
    return {"passages": len(passages), "seconds": time.perf_counter() - started}


def embedforge_mine(workdir: Path, corpus: Path, qrels: Path, queries_file: Path, run: int) -> dict:
    """``embedforge mine --config``: the config loaded from YAML and run as the CLI runs it, Ray started by it."""
    import ray
    import yaml

    from embedforge.config import load_config
    from embedforge.synthesis.mine import MineConfig, run_mine

    config_file = workdir / f"mine-{run}.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(workdir / f"mined-{run}"),
                "labelled": {"queries": str(queries_file), "qrels": str(qrels), "instruction": None},
                "corpus": {"paths": [str(corpus)], "chunk_tokens": CHUNK_TOKENS},
                "teacher": {"model": "all-MiniLM-L6-v2", "batch_size": 32, "num_cpus": THREADS},
                "index": {"kind": "auto"},
                "top_k": TOP_K,
                "num_negatives": 7,
                "ray": {"num_cpus": max(4, THREADS + 2)},
            }
        )
    )
    started = time.perf_counter()
    stats = run_mine(load_config(config_file, MineConfig))
    seconds = time.perf_counter() - started
    ray.shutdown()
    return {"documents": stats["corpus"]["documents"], "passages": stats["passages"], "pairs": stats["pairs"], "negatives": sum(int(n) * c for n, c in stats["negatives_per_pair"].items()), "seconds": seconds}


def main() -> None:
    import faiss  # noqa: F401  (imports are not what either side is timed on)
    import ray  # noqa: F401
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401

    load_before = os.getloadavg()
    plain, mined = [], []
    with tempfile.TemporaryDirectory(prefix="bench-mining-") as tmp:
        workdir = Path(tmp)
        corpus, qrels, queries_file = scifact_inputs(workdir)
        for run in range(REPEATS):  # alternating order: plain first on even runs, mine first on odd ones
            for side in ("plain", "mine") if run % 2 == 0 else ("mine", "plain"):
                if side == "plain":
                    plain.append(plain_loop(corpus, qrels, queries_file))
                else:
                    mined.append(embedforge_mine(workdir, corpus, qrels, queries_file, run))
                print(side, (plain if side == "plain" else mined)[-1], flush=True)
    load_after = os.getloadavg()
    base, mine = min(plain, key=lambda r: r["seconds"]), min(mined, key=lambda r: r["seconds"])
    table = markdown_table(
        ["pipeline", "passages", "seconds", "docs/s", "ratio to plain loop"],
        [
            ["plain loop: sentence-transformers encode + faiss IndexFlatIP (1 process)", base["passages"], round(base["seconds"], 1), round(base["passages"] / base["seconds"], 1), 1.0],
            [
                f"`embedforge mine`: Ray start, one {THREADS}-CPU teacher actor, faiss `index: auto`, negatives, shards, report",
                mine["passages"],
                round(mine["seconds"], 1),
                round(mine["passages"] / mine["seconds"], 1),
                round(base["seconds"] / mine["seconds"], 2),
            ],
        ],
    )
    runs = "" if REPEATS == 1 else f" Best of {REPEATS} runs per side, in alternating order; all runs (s): plain {[round(r['seconds'], 1) for r in plain]}, mine {[round(r['seconds'], 1) for r in mined]}."
    body = f"""Hard-negative mining for the {mine['pairs']} SciFact train judgements over {"the full corpus" if not MINE_DOCS else "a corpus subset"}
({mine['documents']} abstracts, {mine['passages']} passages of at most {CHUNK_TOKENS} tokens, all-MiniLM-L6-v2 teacher, {THREADS} torch threads on both sides, top {TOP_K}, 7 negatives per
pair: {mine['negatives']} negatives mined). Both sides include reading and chunking the corpus, loading the
model and encoding the distinct queries; `embedforge mine` also starts Ray and its actor, scores
every positive, selects negatives and writes shards and the report.

{table}

Load average (1, 5, 15 min) {tuple(round(x, 1) for x in load_before)} before and {tuple(round(x, 1) for x in load_after)} after the run.{runs}
Compare the ratio within one run only."""
    write_section("mining", "Hard-negative mining", "python tests/benchmarks/bench_mining.py", body)
    print(body)


if __name__ == "__main__":
    main()
