"""BM25: the lexical score a reranker's prior can add to the embedder's cosine.

A dense embedder matches meaning and misses exact terms (gene names, drugs, numbers); BM25
matches exactly those. On the SciFact dev split, BM25 over the fine-tuned MiniLM's top 20
ranks better than the embedder itself (docs/benchmarks.md, ``recipe_ablation``), so the CPU
preset's reranker adds it to its prior (:mod:`embedforge.models.prior`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from embedforge.json_files import write_json
from embedforge.models.folders import read_json

TERM = re.compile(r"\w+")


def terms(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode ``\\w+`` runs): the vocabulary BM25 counts."""
    return TERM.findall(text.lower())


@dataclass(frozen=True)
class LexicalScorer:
    r"""Okapi BM25 with document frequencies from a fixed collection.

    .. math::

        \mathrm{BM25}(q, d) = \sum_{t \in q} \mathrm{idf}(t)
            \frac{f(t, d) (k_1 + 1)}{f(t, d) + k_1 (1 - b + b |d| / \mathrm{avgdl})},
        \qquad \mathrm{idf}(t) = \log\left(1 + \frac{N - n_t + 0.5}{n_t + 0.5}\right)

    over the distinct terms of the query; a term the collection never saw scores 0.

    References:
        - S. Robertson and H. Zaragoza, The Probabilistic Relevance Framework: BM25 and
          Beyond (2009); the idf is Lucene's, which stays positive.
        - k1 = 0.9 and b = 0.4 are Anserini's defaults, used for BM25 on BEIR.
    """

    idf: dict[str, float]
    average_length: float
    k1: float = 0.9
    b: float = 0.4

    @classmethod
    def fit(cls, documents: Iterable[str], *, k1: float = 0.9, b: float = 0.4) -> LexicalScorer:
        """Document frequencies and mean length of the distinct texts in ``documents``."""
        unique = list(dict.fromkeys(documents))
        if not unique:
            raise ValueError("BM25 needs at least one document to count terms in")
        frequency: Counter[str] = Counter()
        total = 0
        for text in unique:
            words = terms(text)
            total += len(words)
            frequency.update(set(words))
        n = len(unique)
        idf = {term: math.log(1 + (n - count + 0.5) / (count + 0.5)) for term, count in frequency.items()}
        return cls(idf, max(total / n, 1.0), k1, b)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """BM25 of each document for ``query``, float32, in document order."""
        weights = {term: self.idf[term] for term in set(terms(query)) if term in self.idf}
        scores = np.zeros(len(documents), dtype=np.float32)
        for index, text in enumerate(documents):
            words = terms(text)
            counts = Counter(word for word in words if word in weights)
            norm = self.k1 * (1 - self.b + self.b * len(words) / self.average_length)
            scores[index] = sum(weights[t] * f * (self.k1 + 1) / (f + norm) for t, f in counts.items())
        return scores

    def save(self, path: str | Path) -> Path:
        return write_json(Path(path), asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> LexicalScorer:
        data = read_json(Path(path))
        if data is None:
            raise FileNotFoundError(f"{path}: no BM25 statistics")
        return cls(**data)
