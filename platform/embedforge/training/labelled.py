"""Labelled pairs from BEIR qrels, in the training-row format, with hard negatives.

One row per judged (query, relevant document) pair. Hard negatives come from a mined file
when the mining stage has run, else from the base model here: exact search over the
corpus, excluding every judged positive of the query and any candidate scoring above
``guard`` times the positive's score (such near-duplicates are often unlabelled positives).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from embedforge.data.beir import Document, Qrels


def labelled_pairs(
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    qrels: Qrels,
    query_ids: Sequence[str],
    *,
    negatives: Mapping[str, Sequence[str]] | None = None,
    instruction: str | None = None,
) -> list[dict]:
    """Rows for ``query_ids``; ``negatives`` maps ``"query_id\\tdoc_id"`` to negative doc ids."""
    rows = []
    for query_id in query_ids:
        for doc_id, relevance in sorted(qrels.get(query_id, {}).items()):
            if relevance <= 0 or doc_id not in corpus:
                continue
            negative_ids = (negatives or {}).get(f"{query_id}\t{doc_id}", [])
            rows.append(
                {
                    "query": queries[query_id],
                    "positive": corpus[doc_id].full_text,
                    "negatives": [corpus[n].full_text for n in negative_ids],
                    "instruction": instruction,
                    "query_id": query_id,
                    "doc_id": doc_id,
                }
            )
    return rows


def mine_hard_negatives(
    query_embeddings: np.ndarray,
    doc_embeddings: np.ndarray,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    qrels: Qrels,
    *,
    num_negatives: int,
    guard: float = 0.95,
    depth: int = 100,
) -> dict[str, list[str]]:
    """Hard negatives for every judged (query, positive) pair, hardest first.

    Returns ``{"query_id\\tdoc_id": [negative doc ids]}``; a candidate is kept when it is not
    a judged positive of the query and scores at most ``guard`` x the positive's score.
    Embeddings are normalised, so scores are cosines.
    """
    from embedforge.eval.retrieval import exact_top_k

    index_of = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    top, scores = exact_top_k(query_embeddings, doc_embeddings, depth)
    mined: dict[str, list[str]] = {}
    for row, query_id in enumerate(query_ids):
        positives = {d for d, r in qrels.get(query_id, {}).items() if r > 0}
        for doc_id in sorted(positives):
            if doc_id not in index_of:
                continue
            positive_score = float(query_embeddings[row] @ doc_embeddings[index_of[doc_id]])
            chosen = [
                doc_ids[i]
                for i, score in zip(top[row], scores[row])
                if doc_ids[i] not in positives and score <= guard * positive_score
            ]
            mined[f"{query_id}\t{doc_id}"] = chosen[:num_negatives]
    return mined
