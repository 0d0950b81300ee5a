"""Turning in-memory evaluation data into the dataset objects mteb's task classes read."""

from __future__ import annotations

from typing import Mapping

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

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


class InMemoryRetrieval(AbsTaskRetrieval):
    """An mteb retrieval task over data already in memory (a user's corpus, a test subset).

    The name is free-form; main score ``ndcg_at_10``; queries get ``instruction`` when the
    model uses instructions. The data counts as preloaded, so mteb never unloads it (which
    would also drop this instance's own metadata).
    """

    def __init__(
        self,
        name: str,
        corpus: Mapping[str, Document],
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        instruction: str | None = None,
        split: str = "test",
    ):
        self.metadata = TaskMetadata(
            name=name,
            description=f"in-memory retrieval task {name}",
            dataset={"path": f"local/in-memory/{name}", "revision": "in-memory"},
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            prompt={"query": instruction} if instruction else None,
        )
        super().__init__()
        self.dataset = {"default": {split: retrieval_split(corpus, queries, qrels)}}
        self.data_loaded = True

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        """The data is in memory already."""
