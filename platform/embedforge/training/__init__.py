"""Training stages on Ray Train: stage 1 and 2 contrastive embedder training, stage 2
reranker training, and the stage 3 merge.

Entry points: :func:`run_training` (``TrainConfig`` -> :class:`TrainingResult`) and
:func:`run_merge` (``MergeConfig`` -> merged folder). Heavy imports stay inside them.
"""

from embedforge.training.config import MergeConfig, TrainConfig, load_stage_config, parse_stage_config

__all__ = ["MergeConfig", "TrainConfig", "load_stage_config", "parse_stage_config", "run_merge", "run_training"]


def run_training(config: TrainConfig):
    """Train one model on Ray Train; see :func:`embedforge.training.driver.run_training`."""
    from embedforge.training.driver import run_training as _run

    return _run(config)


def run_merge(config: MergeConfig):
    """Stage 3; see :func:`embedforge.training.merge_stage.run_merge`."""
    from embedforge.training.merge_stage import run_merge as _run

    return _run(config)
