import math
import random

import pytest
import pytrec_eval

from embedforge.eval.metrics import ndcg_at_k, rank_documents, retrieval_scores


def test_ndcg_by_hand():
    judgements = {"a": 2, "b": 1}
    ranked = ["x", "a", "b"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranked, judgements, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["a", "b"], judgements, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], judgements, 1) == 0.0


def test_ties_are_broken_by_descending_id_like_trec_eval():
    assert rank_documents({"a": 1.0, "c": 1.0, "b": 2.0}) == ["b", "c", "a"]


def test_queries_without_positives_are_skipped_and_counted():
    scores = retrieval_scores({"q1": {"d": 1.0}}, {"q1": {"d": 1}, "q2": {"d": 0}})
    assert scores["ndcg_at_10"] == 1.0
    assert scores["queries_skipped_without_positive"] == 1.0


def test_agrees_with_pytrec_eval_on_random_runs():
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(60)]
    qrels = {f"q{i}": {doc: rng.choice([1, 2]) for doc in rng.sample(docs, rng.randint(1, 5))} for i in range(40)}
    run = {query: {doc: rng.random() for doc in rng.sample(docs, 30)} for query in qrels}
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    expected_ndcg = sum(values["ndcg_cut_10"] for values in reference.values()) / len(reference)
    expected_recall = sum(values["recall_100"] for values in reference.values()) / len(reference)
    scores = retrieval_scores(run, qrels)
    assert scores["ndcg_at_10"] == pytest.approx(expected_ndcg, abs=1e-9)
    assert scores["recall_at_100"] == pytest.approx(expected_recall, abs=1e-9)
