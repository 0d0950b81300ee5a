"""The prior a cross-encoder reranker learns a correction on: the embedder's cosine plus BM25.

A cross-encoder trained from a general encoder on a few hundred queries ranks worse than the
fine-tuned embedder whose hits it reranks (docs/benchmarks.md, ``minilm_scifact``). With a
prior, the reranker's relevance logit is

    logit(q, d) = embedder_weight * cos(E(q), E(d)) + lexical_weight * BM25(q, d) + f(q, d)

where E is the first-stage embedder, BM25 counts terms with the training documents'
statistics (:class:`embedforge.models.lexical.LexicalScorer`), and f is the cross-encoder,
whose head starts at zero. Training optimises the same sum, so f learns only what the
prior gets wrong, and an untrained reranker ranks exactly as the prior does.
``embedder_weight`` defaults to 20, one over the embedder's training temperature 0.05:
the prior is then the logit the embedder was trained on.

A reranker folder with a prior holds it in ``prior/``: ``prior.json`` (the weights), the
embedder in ``prior/embedder`` and the BM25 statistics in ``prior/bm25.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from embedforge.json_files import write_json
from embedforge.models.embedder import Embedder
from embedforge.models.folders import read_json
from embedforge.models.lexical import LexicalScorer

PRIOR_FOLDER = "prior"
PRIOR_FILE = "prior.json"
EMBEDDER_FOLDER = "embedder"
LEXICAL_FILE = "bm25.json"


class FirstStagePrior:
    """Scores (query, documents) with the embedder's scaled cosine plus scaled BM25."""

    def __init__(self, embedder: Embedder, lexical: LexicalScorer | None, embedder_weight: float, lexical_weight: float):
        self.embedder = embedder
        self.lexical = lexical
        self.embedder_weight = embedder_weight
        self.lexical_weight = lexical_weight

    @classmethod
    def build(cls, embedder_dir: str | Path, documents: Iterable[str], embedder_weight: float, lexical_weight: float) -> FirstStagePrior:
        """The embedder in ``embedder_dir``, and BM25 counted over ``documents`` when it has a weight."""
        lexical = LexicalScorer.fit(documents) if lexical_weight > 0 else None
        return cls(Embedder.load(embedder_dir, device="cpu"), lexical, embedder_weight, lexical_weight)

    def scores(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """The prior logit of each document for ``query``, float32, in document order."""
        return self.group_scores([query], [documents])[0]

    def group_scores(self, queries: Sequence[str], groups: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Prior logits of each query against its own group of documents (groups may differ in size).

        All queries, and all documents, go through the embedder in one call each, so a batch of
        requests or training rows costs one pass per side, not one per query.
        """
        q = self.embedder.encode(list(queries), query=True)  # (B, H)
        d = self.embedder.encode([text for group in groups for text in group])  # (sum of G, H)
        per_group = np.split(d, np.cumsum([len(group) for group in groups])[:-1])
        logits = []
        for query, group, query_embedding, documents in zip(queries, groups, q, per_group):
            values = self.embedder_weight * (documents @ query_embedding)
            if self.lexical is not None:
                values = values + self.lexical_weight * self.lexical.score(query, group)
            logits.append(values.astype(np.float32))
        return logits

    def save(self, folder: str | Path) -> Path:
        """Write ``folder`` (a reranker's ``prior/``): weights, embedder and BM25 statistics."""
        folder = Path(folder)
        self.embedder.save(folder / EMBEDDER_FOLDER)
        if self.lexical is not None:
            self.lexical.save(folder / LEXICAL_FILE)
        write_json(folder / PRIOR_FILE, {"embedder_weight": self.embedder_weight, "lexical_weight": self.lexical_weight})
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> FirstStagePrior:
        folder = Path(folder)
        weights = read_json(folder / PRIOR_FILE)
        if weights is None:
            raise FileNotFoundError(f"{folder}: no {PRIOR_FILE}")
        lexical = LexicalScorer.load(folder / LEXICAL_FILE) if weights["lexical_weight"] > 0 else None
        return cls(Embedder.load(folder / EMBEDDER_FOLDER, device=device), lexical, weights["embedder_weight"], weights["lexical_weight"])


def copy_prior(source: Path, model_folder: Path) -> None:
    """Put a saved prior into a reranker folder (replacing one already there)."""
    target = model_folder / PRIOR_FOLDER
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
