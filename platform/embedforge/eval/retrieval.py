"""Dense retrieval evaluation: embed a corpus and queries, search exactly, score the run."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from embedforge.data.beir import Document
from embedforge.eval.metrics import Run, retrieval_scores
from embedforge.models.embedder import Embedder


def exact_top_k(query_embeddings: np.ndarray, doc_embeddings: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` doc indices and cosine scores per query, ``(Q, k)`` each; inputs are normalised."""
    k = min(k, doc_embeddings.shape[0])
    docs = torch.from_numpy(doc_embeddings)
    indices, scores = [], []
    for start in range(0, query_embeddings.shape[0], chunk):
        similarity = torch.from_numpy(query_embeddings[start : start + chunk]) @ docs.T  # (q, N)
        top = similarity.topk(k, dim=1)
        indices.append(top.indices.numpy())
        scores.append(top.values.numpy())
    return np.concatenate(indices), np.concatenate(scores)


def search(
    embedder: Embedder,
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    *,
    k: int = 100,
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress: bool = False,
) -> Run:
    """Retrieve the top ``k`` documents for every query; queries get the instruction."""
    doc_ids = list(corpus)
    query_ids = list(queries)
    doc_embeddings = embedder.encode(
        [corpus[doc_id].full_text for doc_id in doc_ids], batch_size=batch_size, show_progress=show_progress
    )
    query_embeddings = embedder.encode(
        [queries[query_id] for query_id in query_ids], query=True, instruction=instruction, batch_size=batch_size
    )
    top_indices, top_scores = exact_top_k(query_embeddings, doc_embeddings, k)
    return {
        query_id: {doc_ids[index]: float(score) for index, score in zip(top_indices[row], top_scores[row])}
        for row, query_id in enumerate(query_ids)
    }


def evaluate_retrieval(
    embedder: Embedder,
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress: bool = False,
) -> dict[str, float]:
    """nDCG@10 (and friends) of ``embedder`` on the judged queries, mteb's metric names."""
    judged_queries = {query_id: queries[query_id] for query_id in qrels if query_id in queries}
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise ValueError(f"{len(missing)} judged query ids have no query text, e.g. {missing[:3]}")
    run = search(embedder, corpus, judged_queries, instruction=instruction, batch_size=batch_size, show_progress=show_progress)
    return retrieval_scores(run, qrels)
