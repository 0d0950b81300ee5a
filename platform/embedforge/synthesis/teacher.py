"""The teacher embedder as Ray Data stages: persona retrieval, query-passage scores, corpus vectors.

The teacher (all-MiniLM-L6-v2 by default, any embedforge or sentence-transformers folder
otherwise) is loaded once per actor in ``__init__``. Vectors are L2-normalised, so every
score here is a cosine.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from embedforge.config import ConfigModel


class TeacherConfig(ConfigModel):
    """The embedder that retrieves personas, scores pairs and mines negatives."""

    model: str = "all-MiniLM-L6-v2"
    """A model folder or a packaged model name."""
    query_instruction: str | None = None
    """Instruction for the query side (Qwen3-style teachers); ``None`` encodes queries bare."""
    batch_size: int = 32
    num_cpus: float = 0.5
    """CPUs per teacher actor; fractional so generation and reading can run beside it. Its
    whole CPUs become torch threads (``embedforge.session.use_assigned_cpus``)."""
    num_gpus: float = 0.0
    concurrency: int = 1


def load_teacher(model: str):
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model
    from embedforge.session import use_assigned_cpus

    use_assigned_cpus()
    return Embedder.load(resolve_model(model))


def encode(embedder, texts: Sequence[str], *, query: bool, instruction: str | None, batch_size: int) -> np.ndarray:
    """Normalised float32 vectors, (N, D); an empty input gives (0, D)."""
    if not texts:
        return np.zeros((0, embedder.hidden_size), dtype=np.float32)
    use_instruction = query and instruction is not None
    return embedder.encode(list(texts), query=use_instruction, instruction=instruction if use_instruction else None, batch_size=batch_size)


def top_k_personas(passage_vectors: np.ndarray, persona_vectors: np.ndarray, personas: Sequence[str], k: int) -> list[list[str]]:
    """The ``k`` most similar personas per passage, best first (ties broken by file order)."""
    scores = passage_vectors @ persona_vectors.T  # (N, P)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[personas[j] for j in row] for row in order]


class PersonaRetriever:
    """Ray Data callable class: add ``personas``, the top-k personas for the passage column."""

    def __init__(self, model: str, personas: list[str], top_k: int = 5, batch_size: int = 32, column: str = "positive"):
        self.embedder = load_teacher(model)
        self.column = column
        self.personas, self.top_k, self.batch_size = personas, top_k, batch_size
        self.persona_vectors = encode(self.embedder, personas, query=False, instruction=None, batch_size=batch_size)

    def __call__(self, batch):
        vectors = encode(self.embedder, batch[self.column].tolist(), query=False, instruction=None, batch_size=self.batch_size)
        batch = batch.copy()
        batch["personas"] = top_k_personas(vectors, self.persona_vectors, self.personas, self.top_k)
        return batch


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two normalised (N, D) arrays, (N,)."""
    return np.einsum("nd,nd->n", a, b).astype(np.float32)


class PairScorer:
    """Ray Data callable class: add ``teacher_score``, cos(query, passage), for rows with a query.

    Rows without a query (rejected ones) get NaN. With ``only_missing``, rows that already
    hold a finite ``teacher_score`` keep it.
    """

    def __init__(
        self,
        model: str,
        query_instruction: str | None = None,
        batch_size: int = 32,
        query_column: str = "query",
        passage_column: str = "positive",
        only_missing: bool = False,
    ):
        self.embedder = load_teacher(model)
        self.only_missing = only_missing
        self.instruction, self.batch_size = query_instruction, batch_size
        self.query_column, self.passage_column = query_column, passage_column

    def __call__(self, batch):
        queries = batch[self.query_column].tolist()
        scores = np.full(len(queries), np.nan, dtype=np.float32)
        if self.only_missing and "teacher_score" in batch:
            scores = batch["teacher_score"].astype("float32").fillna(np.nan).to_numpy(copy=True)
        keep = [i for i, query in enumerate(queries) if isinstance(query, str) and query and not np.isfinite(scores[i])]
        if keep:
            q = encode(self.embedder, [queries[i] for i in keep], query=True, instruction=self.instruction, batch_size=self.batch_size)
            d = encode(self.embedder, [batch[self.passage_column].iloc[i] for i in keep], query=False, instruction=None, batch_size=self.batch_size)
            scores[keep] = cosine_rows(q, d)
        batch = batch.copy()
        batch["teacher_score"] = scores
        return batch


class TextEmbedder:
    """Ray Data callable class: add ``embedding`` (a float32 list) for the ``text`` column."""

    def __init__(self, model: str, query: bool = False, query_instruction: str | None = None, batch_size: int = 32, column: str = "text"):
        self.embedder = load_teacher(model)
        self.query, self.instruction, self.batch_size, self.column = query, query_instruction, batch_size, column

    def __call__(self, batch):
        vectors = encode(self.embedder, batch[self.column].tolist(), query=self.query, instruction=self.instruction, batch_size=self.batch_size)
        batch = batch.copy()
        batch["embedding"] = list(vectors)
        return batch


def actor_options(config: TeacherConfig) -> dict:
    """``map_batches`` keyword arguments for a fixed-size teacher actor pool."""
    from ray.data import ActorPoolStrategy

    return dict(
        batch_format="pandas", batch_size=config.batch_size, compute=ActorPoolStrategy(size=config.concurrency), num_cpus=config.num_cpus, num_gpus=config.num_gpus or None
    )
