"""What mteb's task classes read, built from our own data: the task metadata and the datasets."""

from __future__ import annotations

from typing import Literal, Mapping

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

from embedforge.data.beir import Document

TaskType = Literal["Retrieval", "STS", "Classification"]
MAIN_SCORES: dict[TaskType, str] = {"Retrieval": "ndcg_at_10", "STS": "cosine_spearman", "Classification": "accuracy"}
"""The score each type of local task reports as ``main_score`` (what mteb's own tasks of the type use)."""


def local_metadata(
    name: str,
    task_type: TaskType,
    description: str,
    *,
    dataset: str,
    revision: str,
    instruction: str | None = None,
    split: str = "test",
    languages: list[str] | dict[str, list[str]] | None = None,
    reference: str | None = None,
    license: str | None = None,
) -> TaskMetadata:
    """mteb's metadata for a text task whose data embedforge loads itself, never from the hub.

    ``dataset`` names the data, ``local/<dataset>`` at ``revision`` (mteb records it; only
    our ``load_data`` reads data); ``instruction`` prefixes retrieval queries only, or every
    text of an STS or classification task; ``languages`` are mteb's ``eval_langs``, English by
    default, or one list per subset.
    """
    prompt: str | dict[str, str] | None = instruction or None
    if prompt and task_type == "Retrieval":
        prompt = {"query": instruction}
    return TaskMetadata(
        name=name,
        description=description,
        reference=reference,
        dataset={"path": f"local/{dataset}", "revision": revision},
        type=task_type,
        category="t2c" if task_type == "Classification" else "t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=languages or ["eng-Latn"],
        main_score=MAIN_SCORES[task_type],
        license=license,
        prompt=prompt,
    )


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


class LocalRetrieval(AbsTaskRetrieval):
    """An mteb retrieval task that keeps each query's main score, for paired comparisons.

    mteb averages pytrec_eval's per-query scores into ``ndcg_at_10`` and hands them to
    :meth:`task_specific_scores`, its hook for task-specific metrics. This class keeps them in
    :attr:`query_scores`, ``{"split/subset": {query_id: ndcg@10}}``, for the run being
    evaluated; the runner takes them after each ``mteb.evaluate`` call
    (``embedforge.eval.runner``) and the held-out gates bootstrap over them
    (``embedforge.eval.gates``).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.query_scores: dict[str, dict[str, float]] = {}

    def task_specific_scores(self, scores, qrels, results, hf_split: str, hf_subset: str) -> dict[str, float]:
        self.query_scores[f"{hf_split}/{hf_subset}"] = {query_id: metrics["ndcg_cut_10"] for query_id, metrics in scores.items()}
        return {}


def pairs_dataset(sentence1: list[str], sentence2: list[str], scores: list[float]) -> Dataset:
    """An mteb STS split: ``sentence1``, ``sentence2``, ``score``."""
    return Dataset.from_dict({"sentence1": sentence1, "sentence2": sentence2, "score": scores})


class InMemoryRetrieval(LocalRetrieval):
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
        self.metadata = local_metadata(
            name,
            "Retrieval",
            f"in-memory retrieval task {name}",
            dataset=f"in-memory/{name}",
            revision="in-memory",
            instruction=instruction,
            split=split,
        )
        super().__init__()
        self.dataset = {"default": {split: retrieval_split(corpus, queries, qrels)}}
        self.data_loaded = True

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        """The data is in memory already."""
