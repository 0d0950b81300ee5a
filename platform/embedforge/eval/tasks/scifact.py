"""SciFact retrieval on the project's fixed dev split of the train qrels.

The dev queries are ``split_ids(train qrels, seed=13, dev_fraction=0.2)[1]``: the same
queries that training holds out, so scores measure generalisation, never memorisation. The
corpus is all 5,183 abstracts (or a subset under ``TaskLimits``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from embedforge.data.beir import load_corpus, load_qrels, load_queries
from embedforge.data.splits import split_ids
from embedforge.eval.sampling import retrieval_subset
from embedforge.eval.tasks.limits import TaskLimits
from embedforge.eval.tasks.mteb_format import LocalRetrieval, local_metadata, retrieval_split
from embedforge.paths import shared_data_dir

logger = logging.getLogger(__name__)

SCIFACT_INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim"


def load_scifact_dev(folder: Path, limits: TaskLimits) -> tuple[dict, dict, dict]:
    """Corpus, dev queries and dev qrels of SciFact (BEIR files in ``folder``), within ``limits``."""
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(folder / "qrels" / "train.tsv")
    _, dev_ids = split_ids(qrels)
    dev_qrels = {query_id: qrels[query_id] for query_id in dev_ids}
    return retrieval_subset(
        corpus, queries, dev_qrels, max_queries=limits.max_queries, max_corpus_docs=limits.max_corpus_docs
    )


class SciFactDev(LocalRetrieval):
    metadata = local_metadata(
        "scifact-dev",
        "Retrieval",
        "SciFact claims -> abstracts; the fixed embedforge dev split (seed 13, 20%) of the 809 train-qrels queries.",
        dataset="shared-data/retrieval/scifact",
        revision="train-qrels-dev-split-seed13",
        instruction=SCIFACT_INSTRUCTION,
        split="dev",
        reference="https://github.com/allenai/scifact",
        license="cc-by-nc-4.0",
    )

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        corpus, queries, qrels = load_scifact_dev(shared_data_dir() / "retrieval" / "scifact", self.limits)
        logger.info("scifact-dev: %d queries, %d documents", len(queries), len(corpus))
        self.dataset = {"default": {"dev": retrieval_split(corpus, queries, qrels)}}
        self.data_loaded = True
