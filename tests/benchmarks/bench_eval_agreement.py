"""nDCG@10 of all-MiniLM-L6-v2 on SciFact train queries: embedforge's evaluator vs mteb.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_eval_agreement.py [--max-queries N --max-corpus-docs M]
Full data (809 queries, 5,183 documents) by default: about 12 minutes on 2 CPU cores, since
both systems encode the corpus independently. mteb encodes with its own sentence-transformers
wrapper; embedforge with ``evaluate_retrieval``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "platform"))

from tests.benchmarks.report import markdown_table, write_section  # noqa: E402


def main(max_queries: int | None, max_corpus_docs: int | None) -> None:
    import mteb
    from sentence_transformers import SentenceTransformer

    from embedforge.data.beir import load_corpus, load_qrels, load_queries
    from embedforge.eval.retrieval import evaluate_retrieval
    from embedforge.eval.sampling import retrieval_subset
    from embedforge.eval.tasks.mteb_format import InMemoryRetrieval
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model
    from embedforge.paths import shared_data_dir

    folder = shared_data_dir() / "retrieval" / "scifact"
    corpus, queries, qrels = retrieval_subset(
        load_corpus(folder / "corpus.jsonl"),
        load_queries(folder / "queries.jsonl"),
        load_qrels(folder / "qrels" / "train.tsv"),
        max_queries=max_queries,
        max_corpus_docs=max_corpus_docs,
    )
    model = resolve_model("all-MiniLM-L6-v2")

    start = time.perf_counter()
    ours = evaluate_retrieval(Embedder.load(model, device="cpu"), corpus, queries, qrels, batch_size=64)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    result = mteb.evaluate(
        SentenceTransformer(str(model), device="cpu"),
        [InMemoryRetrieval("scifact-train", corpus, queries, qrels)],
        cache=None,
        co2_tracker=False,
        show_progress_bar=False,
        encode_kwargs={"batch_size": 64},
    )
    theirs = result.task_results[0].scores["test"][0]
    mteb_seconds = time.perf_counter() - start

    rows = [
        ["embedforge evaluate_retrieval", f"{ours['ndcg_at_10']:.4f}", f"{ours['recall_at_100']:.4f}", f"{ours_seconds:.0f}"],
        ["mteb 2.x (SentenceTransformer)", f"{theirs['ndcg_at_10']:.4f}", f"{theirs['recall_at_100']:.4f}", f"{mteb_seconds:.0f}"],
    ]
    delta = abs(ours["ndcg_at_10"] - theirs["ndcg_at_10"])
    body = (
        f"all-MiniLM-L6-v2 on SciFact train qrels: {len(qrels)} queries, {len(corpus)} documents.\n\n"
        + markdown_table(["evaluator", "nDCG@10", "recall@100", "seconds"], rows)
        + f"\n\n|Δ nDCG@10| = {delta:.4f} (issue 2 requires < 0.02; the test on a subset is tests/test_eval_mteb_agreement.py)."
    )
    command = "python tests/benchmarks/bench_eval_agreement.py" + (
        f" --max-queries {max_queries} --max-corpus-docs {max_corpus_docs}" if max_queries or max_corpus_docs else ""
    )
    write_section("eval_agreement", "Retrieval evaluation: embedforge vs mteb", command, body)
    print(body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--max-corpus-docs", type=int, default=None)
    arguments = parser.parse_args()
    main(arguments.max_queries, arguments.max_corpus_docs)
