"""Labelled (query, positive) pairs from BEIR queries and qrels, in the pairs schema.

Hard-negative mining works on these exactly as on synthetic pairs: one row per judged
(query, positive document), ``positive_ids`` holding every document judged relevant to the
query, so mining never returns any of them as a negative.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from embedforge.config import ConfigModel, DataPath
from embedforge.prompts import DEFAULT_RETRIEVAL_INSTRUCTION


class LabelledPairsConfig(ConfigModel):
    """BEIR queries and qrels to turn into pairs."""

    queries: DataPath
    qrels: DataPath
    split: Literal["all", "train", "dev"] = "all"
    """``train``/``dev``: the project's fixed split of the qrels' queries (``embedforge.data.splits``)."""
    instruction: str | None = DEFAULT_RETRIEVAL_INSTRUCTION
    """The query instruction written into every row; ``null`` leaves queries bare (for
    models trained without instructions, such as all-MiniLM-L6-v2)."""
    task_type: str = "retrieval"
    language: str = "English"


def labelled_pair_id(query_id: str, doc_id: str) -> str:
    return hashlib.sha1(f"labelled\x1f{query_id}\x1f{doc_id}".encode()).hexdigest()[:16]


def labelled_pairs(config: LabelledPairsConfig, passages: list[dict]) -> tuple[list[dict], dict]:
    """Pair rows for every judged positive whose document is in ``passages``.

    Returns the rows and counts (``judged``, ``pairs``, ``missing_document`` for judgements
    whose document is not in the corpus read, which are skipped and counted).
    """
    from embedforge.data.beir import load_qrels, load_queries
    from embedforge.data.splits import split_ids

    queries, qrels = load_queries(config.queries), load_qrels(config.qrels)
    query_ids = sorted(qrels)
    if config.split != "all":
        train, dev = split_ids(query_ids)
        query_ids = sorted(train if config.split == "train" else dev)
    first_passage = {}
    for passage in passages:
        first_passage.setdefault(passage["doc_id"], passage)
    rows, judged, missing = [], 0, 0
    for query_id in query_ids:
        positives = sorted(doc for doc, relevance in qrels[query_id].items() if relevance > 0)
        for doc_id in positives:
            judged += 1
            passage = first_passage.get(doc_id)
            if passage is None or query_id not in queries:
                missing += 1
                continue
            rows.append(
                {
                    "id": labelled_pair_id(query_id, doc_id),
                    "query": queries[query_id],
                    "positive": passage["passage"],
                    "instruction": config.instruction,
                    "task_type": config.task_type,
                    "language": config.language,
                    "corpus_language": config.language,
                    "source_doc_id": doc_id,
                    "passage_id": passage["passage_id"],
                    "positive_ids": positives,
                    "engine": "labelled",
                    "model": None,
                }
            )
    return rows, {"judged": judged, "pairs": len(rows), "missing_document": missing}
