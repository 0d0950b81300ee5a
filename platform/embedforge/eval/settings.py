"""``EvaluateConfig``: which tasks to evaluate on, how much of each, and how.

``embedforge evaluate`` builds one from its flags, a pipeline's ``evaluate`` section is
one, and :func:`embedforge.eval.runner.run_evaluate` takes it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from embedforge.config import ConfigModel
from embedforge.eval.tasks.limits import TaskLimits


class EvaluateConfig(ConfigModel):
    """What to evaluate and how much of it."""

    tasks: list[str] = Field(default_factory=lambda: ["scifact-dev"], min_length=1)
    """Offline task names (scifact-dev, cranfield, stsb-dev, stsb-multi-mt-dev, banking77, xquad, xquad-crosslingual) or mteb task names."""
    limits: TaskLimits = Field(default_factory=TaskLimits)
    """Size limits for offline tasks (quick runs)."""
    batch_size: int = Field(32, ge=1)
    """Texts per embedder forward pass."""
    rerank_top_k: int = Field(100, ge=1)
    """Dense candidates per query handed to the reranker."""
    rerank_batch_size: int = Field(16, ge=1)
    use_instructions: bool | Literal["auto"] = "auto"
    """Task instructions on queries (and both sides of symmetric tasks); auto: if the model has a default instruction."""
    instructions: dict[str, str] = Field(default_factory=dict)
    """Per-task instruction overrides, by task name."""
    dimensions: int | None = None
    """Matryoshka output size; ``None`` evaluates full-size embeddings."""
    gate_max_drop: float = Field(0.005, ge=0)
    """How far below its starting point a produced model may score on a task and still pass
    its held-out gate (``embedforge.eval.gates``; the pipeline checks them)."""
