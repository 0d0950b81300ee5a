"""Stable names for a run's results: ``run_dir/final``, ``reranker``, ``stage1``, ``stage2``.

Stage folders are keyed by a hash of their config (``embedforge.pipeline.stages``), so their
names change whenever a setting does. Each time a model stage completes (or is found
complete), a symbolic link with a fixed name is pointed at its model, so docs, scripts and
``embedforge encode/evaluate/serve`` can always name the latest result of a run.
"""

from __future__ import annotations

import os
from pathlib import Path

RESULT_NAMES = {"stage1": "stage1", "stage2": "stage2", "merge": "final", "reranker": "reranker"}
"""Stage name -> the fixed name of its model under ``run_dir``."""


def link_result(run_dir: Path, stage: str, model: str | Path) -> Path | None:
    """Point ``run_dir/<fixed name>`` at ``model`` (relative when inside ``run_dir``); returns the link.

    The link is replaced atomically (a new link beside it, then a rename), so a reader never
    sees a missing or half-written name. Stages without a fixed name return ``None``.
    """
    name = RESULT_NAMES.get(stage)
    if name is None:
        return None
    run_dir = Path(run_dir).resolve()
    target = Path(model).resolve()
    link = run_dir / name
    if link.exists() and not link.is_symlink():
        raise ValueError(f"{link} exists and is not a link: move it away; the pipeline keeps this name for the {stage} model")
    pointer = os.path.relpath(target, run_dir) if target.is_relative_to(run_dir) else str(target)
    tmp = run_dir / f".{name}.link-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(pointer, target_is_directory=True)
    os.replace(tmp, link)
    return link
