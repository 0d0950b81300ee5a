"""Training stages on Ray Train: stage 1 and 2 contrastive embedder training and stage 2
reranker training.

Entry point: :func:`run_training` (``TrainConfig`` -> :class:`TrainingResult`), defined in
:mod:`embedforge.training.driver`; Ray and torch load inside it. Stage 3, the merge, is
:mod:`embedforge.merge`.
"""

from embedforge.training.config import TrainConfig, load_stage_config, parse_stage_config
from embedforge.training.driver import TrainingResult, run_training

__all__ = ["TrainConfig", "TrainingResult", "load_stage_config", "parse_stage_config", "run_training"]
