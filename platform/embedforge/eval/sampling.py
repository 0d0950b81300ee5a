"""Deterministic subsets of evaluation data, so quick runs stay comparable between systems.

An item's place in the order depends only on a hash of ``"{seed}:{id}"``, never on file order
or Python's hash seed: the same limits give the same subset on every machine, and two
evaluators handed the same limits see identical data.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping, TypeVar

T = TypeVar("T")

SAMPLE_SEED = 13


def stable_order(ids: Iterable[str], *, seed: int = SAMPLE_SEED) -> list[str]:
    """Ids sorted by ``sha1(f"{seed}:{id}")``: a fixed pseudo-random order."""
    return sorted(set(ids), key=lambda item: hashlib.sha1(f"{seed}:{item}".encode()).digest())


def sample_ids(ids: Iterable[str], limit: int | None, *, seed: int = SAMPLE_SEED) -> list[str]:
    """The first ``limit`` ids of :func:`stable_order` (all of them when ``limit`` is ``None``), sorted."""
    ordered = stable_order(ids, seed=seed)
    return sorted(ordered if limit is None else ordered[:limit])


def retrieval_subset(
    corpus: Mapping[str, T],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    max_queries: int | None = None,
    max_corpus_docs: int | None = None,
    seed: int = SAMPLE_SEED,
) -> tuple[dict[str, T], dict[str, str], dict[str, dict[str, int]]]:
    """Keep ``max_queries`` judged queries and a corpus of at most ``max_corpus_docs`` documents.

    Every document judged for a kept query stays (so no positive is lost, even past the
    limit); the rest of the corpus fills up to ``max_corpus_docs`` in :func:`stable_order`.
    Judged queries without query text raise, rather than vanish.
    """
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise ValueError(f"{len(missing)} judged query ids have no query text, e.g. {missing[:3]}")
    kept_queries = sample_ids(qrels, max_queries, seed=seed)
    sub_qrels = {query_id: dict(qrels[query_id]) for query_id in kept_queries}
    judged_docs = {doc_id for judgements in sub_qrels.values() for doc_id in judgements if doc_id in corpus}
    if max_corpus_docs is None:
        doc_ids = set(corpus)
    else:
        others = [doc_id for doc_id in stable_order(corpus, seed=seed) if doc_id not in judged_docs]
        doc_ids = judged_docs | set(others[: max(0, max_corpus_docs - len(judged_docs))])
    sub_corpus = {doc_id: corpus[doc_id] for doc_id in sorted(doc_ids)}
    return sub_corpus, {query_id: queries[query_id] for query_id in kept_queries}, sub_qrels
