"""Stage 3: slerp the chosen stage-2 checkpoints into the final model."""

from __future__ import annotations

from pathlib import Path

from embedforge.training.config import MergeConfig


def run_merge(cfg: MergeConfig) -> Path:
    """Merge ``cfg.checkpoints`` into ``cfg.output``; the folder loads like its inputs."""
    from embedforge.merge import merge_checkpoints

    for folder in cfg.checkpoints:
        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"checkpoint {folder} is not a model folder (no config.json)")
    merge_checkpoints(cfg.checkpoints, cfg.output, weights=cfg.weights, method=cfg.method)
    return Path(cfg.output)
