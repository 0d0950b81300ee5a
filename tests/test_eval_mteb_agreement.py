"""Issue 2: embedforge's own retrieval evaluation agrees with mteb's within 0.02 nDCG@10.

Both systems score all-MiniLM-L6-v2 on the identical deterministic subset of SciFact train
queries and corpus: mteb with its own sentence-transformers wrapper (no embedforge code
in its path except building the dataset objects), embedforge with ``evaluate_retrieval``.
The full-data figures are in docs/benchmarks.md (tests/benchmarks/bench_eval_agreement.py).
"""

from __future__ import annotations

import pytest

AGREEMENT_QUERIES = 120
AGREEMENT_CORPUS_DOCS = 360  # every judged document of those queries, then others up to this count


@pytest.fixture(scope="module")
def scifact_subset(shared_data):
    from embedforge.data.beir import RetrievalDataConfig
    from embedforge.eval.sampling import retrieval_subset

    folder = shared_data / "retrieval" / "scifact"
    corpus, queries, qrels = RetrievalDataConfig(
        corpus=folder / "corpus.jsonl", queries=folder / "queries.jsonl", qrels=folder / "qrels" / "train.tsv"
    ).load()
    return retrieval_subset(corpus, queries, qrels, max_queries=AGREEMENT_QUERIES, max_corpus_docs=AGREEMENT_CORPUS_DOCS)


@pytest.mark.slow
def test_own_ndcg_at_10_matches_mteb_on_scifact_train_subset(scifact_subset, minilm_dir):
    import mteb
    from sentence_transformers import SentenceTransformer

    from embedforge.eval.retrieval import evaluate_retrieval
    from embedforge.eval.tasks.mteb_format import InMemoryRetrieval
    from embedforge.models.embedder import Embedder

    corpus, queries, qrels = scifact_subset
    assert len(qrels) == AGREEMENT_QUERIES
    judged = {doc_id for judgements in qrels.values() for doc_id in judgements}
    assert judged <= set(corpus) and len(corpus) == AGREEMENT_CORPUS_DOCS

    ours = evaluate_retrieval(Embedder.load(minilm_dir), corpus, queries, qrels, batch_size=64)["ndcg_at_10"]

    task = InMemoryRetrieval("scifact-train-subset", corpus, queries, qrels)
    result = mteb.evaluate(
        SentenceTransformer(str(minilm_dir), device="cpu"),
        [task],
        cache=None,
        co2_tracker=False,
        show_progress_bar=False,
        encode_kwargs={"batch_size": 64},
    )
    theirs = result.task_results[0].scores["test"][0]["ndcg_at_10"]

    assert 0.3 < theirs < 0.95  # a real pretrained model on real data, not a degenerate run
    assert abs(ours - theirs) < 0.02, f"embedforge nDCG@10 {ours:.4f} vs mteb {theirs:.4f}"
