"""Turning in-memory evaluation data into the dataset objects mteb's task classes read."""

from __future__ import annotations

from typing import Mapping

from datasets import Dataset

from embedforge.data.beir import Document


def retrieval_split(
    corpus: Mapping[str, Document], queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]
) -> dict:
    """One mteb ``RetrievalSplitData``: corpus and queries as datasets, qrels as a dict."""
    return {
        "corpus": Dataset.from_dict(
            {
                "id": list(corpus),
                "title": [document.title for document in corpus.values()],
                "text": [document.text for document in corpus.values()],
            }
        ),
        "queries": Dataset.from_dict({"id": list(queries), "text": list(queries.values())}),
        "relevant_docs": {query_id: dict(judgements) for query_id, judgements in qrels.items()},
        "top_ranked": None,
    }


def pairs_dataset(sentence1: list[str], sentence2: list[str], scores: list[float]) -> Dataset:
    """An mteb STS split: ``sentence1``, ``sentence2``, ``score``."""
    return Dataset.from_dict({"sentence1": sentence1, "sentence2": sentence2, "score": scores})
