"""How much of each offline task to evaluate: full data by default, subsets for quick runs."""

from __future__ import annotations

from pydantic import Field

from embedforge.config import ConfigModel


class TaskLimits(ConfigModel):
    """Size limits applied when a task loads its data; ``None`` keeps everything.

    Subsets are deterministic (``embedforge.eval.sampling``), so two runs with the same
    limits, or two evaluators, see identical data.
    """

    max_queries: int | None = Field(None, ge=1)
    """Retrieval queries, STS pairs and classification test texts kept per subset."""
    max_corpus_docs: int | None = Field(None, ge=1)
    """Retrieval corpus size: every document judged for a kept query, then others up to this count."""
    classification_experiments: int = Field(10, ge=1)
    """Classification: logistic-regression runs on 8 training samples per label (mteb's default is 10)."""
    classification_samples_per_label: int = Field(8, ge=1)
    """Classification: training texts per label for each logistic regression (mteb's default is 8)."""
    languages: list[str] | None = None
    """Multilingual tasks (XQuAD, stsb-multi-mt): ISO 639-1 codes to run, e.g. ``[en, de]``; ``None`` runs all."""
