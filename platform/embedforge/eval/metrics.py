"""Ranking metrics computed the way trec_eval (and so mteb) computes them.

nDCG@k uses linear gains (the judgement value) and ``log2(rank + 1)`` discounts; the ideal
ranking is built from all judged documents of the query. Documents with equal scores are
ordered by id, descending, as trec_eval does. Queries without a positive judgement are
skipped, as mteb skips them, and counted.
"""

from __future__ import annotations

import math
from typing import Mapping

Run = Mapping[str, Mapping[str, float]]
"""``{query_id: {doc_id: score}}``: retrieved documents and their scores."""


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by score descending; ties by id descending (trec_eval's order)."""
    return [doc_id for doc_id, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def ndcg_at_k(ranked: list[str], judgements: Mapping[str, int], k: int) -> float:
    dcg = sum(judgements.get(doc_id, 0) / math.log2(rank + 2) for rank, doc_id in enumerate(ranked[:k]))
    ideal_gains = sorted((gain for gain in judgements.values() if gain > 0), reverse=True)[:k]
    ideal = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal_gains))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(ranked: list[str], judgements: Mapping[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, gain in judgements.items() if gain > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: list[str], judgements: Mapping[str, int], k: int) -> float:
    for rank, doc_id in enumerate(ranked[:k]):
        if judgements.get(doc_id, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


def judged_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The queries with at least one positive judgement: the ones every metric here averages over."""
    judged = [query_id for query_id, judgements in qrels.items() if any(gain > 0 for gain in judgements.values())]
    if not judged:
        raise ValueError("no query has a positive relevance judgement")
    return judged


def query_ndcg(run: Run, qrels: Mapping[str, Mapping[str, int]], k: int = 10) -> dict[str, float]:
    """nDCG@k of each judged query, for paired comparisons; their mean is ``retrieval_scores``' ``ndcg_at_k``."""
    return {query_id: ndcg_at_k(rank_documents(run.get(query_id, {})), qrels[query_id], k) for query_id in judged_queries(qrels)}


def retrieval_scores(run: Run, qrels: Mapping[str, Mapping[str, int]], k_values: tuple[int, ...] = (10, 100)) -> dict[str, float]:
    """Mean ``ndcg_at_k``, ``recall_at_k`` and ``mrr_at_k`` over judged queries (mteb's names)."""
    judged = judged_queries(qrels)
    totals: dict[str, float] = {}
    for query_id in judged:
        ranked = rank_documents(run.get(query_id, {}))
        for k in k_values:
            for name, metric in (("ndcg", ndcg_at_k), ("recall", recall_at_k), ("mrr", mrr_at_k)):
                key = f"{name}_at_{k}"
                totals[key] = totals.get(key, 0.0) + metric(ranked, qrels[query_id], k)
    scores = {key: value / len(judged) for key, value in totals.items()}
    scores["queries_evaluated"] = float(len(judged))
    scores["queries_skipped_without_positive"] = float(len(qrels) - len(judged))
    return scores
