"""The teacher embedder as Ray Data stages: persona retrieval, query-passage scores, corpus vectors.

The teacher (all-MiniLM-L6-v2 by default, any embedforge or sentence-transformers folder
otherwise) is loaded once per actor in ``__init__``. Vectors are L2-normalised, so every
score here is a cosine.

Queries are formatted as the teacher was trained: a teacher trained with instructions (one
whose saved settings hold a ``default_instruction``, such as Qwen3-Embedding) gets each row's
own ``instruction`` in its query template, and symmetric tasks get it on both sides; a teacher
trained without (all-MiniLM-L6-v2) sees bare texts. Documents never get one. Every score
records the teacher that made it (``teacher_model``), so a later stage with another teacher
knows to re-score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from embedforge.config import ConfigModel
from embedforge.prompts import SYMMETRIC_TASK_TYPES



class TeacherConfig(ConfigModel):
    """The embedder that retrieves personas, scores pairs and mines negatives."""

    model: str = "all-MiniLM-L6-v2"
    """A model folder or a packaged model name."""
    use_instructions: bool | Literal["auto"] = "auto"
    """Format each query with its row's ``instruction`` (else ``query_instruction``, else the
    model's default) in the model's query template; symmetric tasks (sts, bitext) get it on
    the positive too. ``auto``: only if the model was trained with instructions (its settings
    hold a ``default_instruction``; all-MiniLM-L6-v2's do not). ``false``: every text bare."""
    query_instruction: str | None = None
    """The instruction for rows that carry none, when instructions are used; ``None`` falls
    back to the model's default instruction."""
    batch_size: int = 32
    num_cpus: float = 0.5
    """CPUs per teacher actor; fractional so generation and reading can run beside it. Its
    whole CPUs become torch threads (``embedforge.session.use_assigned_cpus``)."""
    num_gpus: float = 0.0
    concurrency: int = 1


@dataclass(frozen=True)
class InstructionPolicy:
    """How one teacher formats pair texts: with instructions or bare, and the fallback one."""

    enabled: bool
    fallback: str | None
    """The instruction of rows that carry none (``None``: such rows stay bare)."""

    def for_row(self, instruction: object, task_type: object) -> tuple[str | None, str | None]:
        """The (query side, positive side) instructions of one row; ``None`` is bare."""
        if not self.enabled:
            return None, None
        chosen = instruction if isinstance(instruction, str) and instruction else self.fallback
        return chosen, chosen if isinstance(task_type, str) and task_type in SYMMETRIC_TASK_TYPES else None


def instruction_policy(default_instruction: str | None, use_instructions: bool | Literal["auto"], query_instruction: str | None) -> InstructionPolicy:
    """The policy of a teacher whose saved settings hold ``default_instruction``."""
    enabled = default_instruction is not None if use_instructions == "auto" else bool(use_instructions)
    return InstructionPolicy(enabled, query_instruction if query_instruction is not None else default_instruction)


def teacher_identity(model: str, policy: InstructionPolicy) -> str:
    """What ``teacher_model`` records: the model (a packaged name, else its absolute folder) and the policy."""
    from embedforge.models.registry import BUILT_MODELS, PACKAGED_MODELS, resolve_model

    name = model if model in PACKAGED_MODELS or model in BUILT_MODELS else str(resolve_model(model).resolve())
    if not policy.enabled:
        return f"{name} | no instructions"
    return f"{name} | row instructions, else {policy.fallback!r}"


def configured_identity(config: TeacherConfig) -> str:
    """The ``teacher_model`` a :class:`PairScorer` for ``config`` records, read from the model's
    saved settings without loading its weights (so a stage whose scores are all reusable loads no model)."""
    return teacher_identity(config.model, teacher_policy(config))


def reusable_score(score: object, recorded_teacher: object, identity: str) -> bool:
    """Whether a stored ``teacher_score`` is this teacher's own: finite and recorded by ``identity``."""
    return isinstance(recorded_teacher, str) and recorded_teacher == identity and isinstance(score, (int, float, np.floating)) and bool(np.isfinite(score))


def teacher_policy(config: TeacherConfig) -> InstructionPolicy:
    """The policy a teacher actor of ``config`` will follow, read from the model folder's
    saved settings on the caller's side (no weights are loaded)."""
    from embedforge.models.embedder import read_settings
    from embedforge.models.registry import resolve_model

    return instruction_policy(read_settings(resolve_model(config.model)).default_instruction, config.use_instructions, config.query_instruction)


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


def encode_by_instruction(embedder, texts: Sequence[str], instructions: Sequence[str | None], *, batch_size: int) -> np.ndarray:
    """Normalised vectors (N, D), each text in the query template with its own instruction
    (``None``: bare); one ``encode`` call per distinct instruction, rows in input order."""
    output = np.zeros((len(texts), embedder.hidden_size), dtype=np.float32)
    groups: dict[str | None, list[int]] = {}
    for index, instruction in enumerate(instructions):
        groups.setdefault(instruction, []).append(index)
    for instruction, rows in groups.items():
        output[rows] = encode(embedder, [texts[i] for i in rows], query=True, instruction=instruction, batch_size=batch_size)
    return output


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


def optional_column(batch, name: str) -> list:
    return batch[name].tolist() if name in batch else [None] * len(batch)


class PairScorer:
    """Ray Data callable class: add ``teacher_score``, cos(query, positive), and ``teacher_model``.

    Texts follow the teacher's :class:`InstructionPolicy`, read from the ``instruction`` and
    ``task_type`` columns where present. Rows without a query get NaN and no teacher. With
    ``reuse_scores``, rows whose finite ``teacher_score`` this same teacher recorded keep it.
    With ``embed_queries``, also add ``embedding``, the query vectors (zeros for rows without a
    query), and ``document_score``, cos(query, positive encoded as a document): the score a
    search over bare corpus vectors gives the positive (equal to ``teacher_score`` except on
    symmetric tasks), which mining's false-negative guard compares candidates against.
    """

    def __init__(
        self,
        model: str,
        use_instructions: bool | Literal["auto"] = "auto",
        query_instruction: str | None = None,
        batch_size: int = 32,
        query_column: str = "query",
        passage_column: str = "positive",
        reuse_scores: bool = False,
        embed_queries: bool = False,
    ):
        self.embedder = load_teacher(model)
        self.policy = instruction_policy(self.embedder.settings.default_instruction, use_instructions, query_instruction)
        self.identity = teacher_identity(model, self.policy)
        self.batch_size, self.reuse_scores, self.embed_queries = batch_size, reuse_scores, embed_queries
        self.query_column, self.passage_column = query_column, passage_column

    def __call__(self, batch):
        queries, positives = batch[self.query_column].tolist(), batch[self.passage_column].tolist()
        sides = [self.policy.for_row(instruction, task) for instruction, task in zip(optional_column(batch, "instruction"), optional_column(batch, "task_type"))]
        with_query = [i for i, query in enumerate(queries) if isinstance(query, str) and query]
        scores = np.full(len(queries), np.nan, dtype=np.float32)
        if self.reuse_scores:
            recorded = zip(optional_column(batch, "teacher_score"), optional_column(batch, "teacher_model"))
            for i, (score, teacher) in enumerate(recorded):
                if reusable_score(score, teacher, self.identity):
                    scores[i] = score
        to_score = [i for i in with_query if not np.isfinite(scores[i])]
        to_embed = with_query if self.embed_queries else to_score
        q = np.zeros((len(queries), self.embedder.hidden_size), dtype=np.float32)  # (N, D)
        q[to_embed] = self.encode_texts([queries[i] for i in to_embed], [sides[i][0] for i in to_embed])
        scores[to_score] = cosine_rows(q[to_score], self.encode_texts([positives[i] for i in to_score], [sides[i][1] for i in to_score]))
        batch = batch.copy()
        batch["teacher_score"] = scores
        scored = set(with_query)
        batch["teacher_model"] = [self.identity if i in scored else None for i in range(len(queries))]
        if self.embed_queries:
            symmetric = [i for i in with_query if sides[i][1] is not None]
            documents = scores.copy()
            documents[symmetric] = cosine_rows(q[symmetric], self.encode_texts([positives[i] for i in symmetric], [None] * len(symmetric)))
            batch["embedding"] = list(q)
            batch["document_score"] = documents
        return batch

    def encode_texts(self, texts: list[str], instructions: list[str | None]) -> np.ndarray:
        return encode_by_instruction(self.embedder, texts, instructions, batch_size=self.batch_size)


def scorer_options(config: TeacherConfig, **options) -> dict:
    """``fn_constructor_kwargs`` of a :class:`PairScorer` for this teacher config."""
    return dict(model=config.model, use_instructions=config.use_instructions, query_instruction=config.query_instruction, batch_size=config.batch_size, **options)


class TextEmbedder:
    """Ray Data callable class (numpy batches): add ``embedding``, an (N, D) float32 tensor
    column, for the ``text`` column; bare documents, or with ``instruction_column``, each text
    in the query template with its row's instruction (null: bare)."""

    def __init__(self, model: str, batch_size: int = 32, column: str = "text", instruction_column: str | None = None):
        self.embedder = load_teacher(model)
        self.batch_size, self.column, self.instruction_column = batch_size, column, instruction_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = batch[self.column].tolist()
        if self.instruction_column is None:
            vectors = encode(self.embedder, texts, query=False, instruction=None, batch_size=self.batch_size)
        else:
            vectors = encode_by_instruction(self.embedder, texts, batch[self.instruction_column].tolist(), batch_size=self.batch_size)
        return {**batch, "embedding": vectors}


def actor_options(config: TeacherConfig, batch_format: str = "pandas", batch_size: int | None = None) -> dict:
    """``map_batches`` keyword arguments for a fixed-size teacher actor pool; ``batch_size``
    (rows per call) defaults to the teacher's encode batch."""
    from ray.data import ActorPoolStrategy

    return dict(
        batch_format=batch_format,
        batch_size=batch_size or config.batch_size,
        compute=ActorPoolStrategy(size=config.concurrency),
        num_cpus=config.num_cpus,
        num_gpus=config.num_gpus or None,
    )
