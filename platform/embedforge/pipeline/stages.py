"""Resumable stages: each writes into its own folder keyed by its config, and is skipped when done.

A stage's key hashes its config together with the keys of the stages it reads from, so a
changed upstream stage re-runs everything downstream of it and nothing else. A stage is
complete when its folder holds ``_COMPLETE.json``, written last, with the stage's summary.
A crash therefore leaves no marker, and the next run starts that stage again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

COMPLETE_MARKER = "_COMPLETE.json"


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    folder: Path
    summary: dict[str, Any]
    skipped: bool
    """True when the output was already complete and the stage did not run."""


def stage_key(config: BaseModel | dict | None, upstream: list[StageResult]) -> str:
    """A short hash of the stage config and the keys of its inputs."""
    payload = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    text = json.dumps({"config": payload, "upstream": [result.key for result in upstream]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_stage(
    name: str,
    run_dir: Path,
    config: BaseModel | dict | None,
    action: Callable[[Path], dict[str, Any]],
    upstream: list[StageResult] = (),
    log: Callable[[str], None] = print,
) -> StageResult:
    """Run ``action(folder)`` unless ``folder`` already holds a complete result."""
    upstream = list(upstream)
    key = stage_key(config, upstream)
    folder = run_dir / f"{name}-{key}"
    marker = folder / COMPLETE_MARKER
    if marker.exists():
        log(f"[{name}] complete in {folder}; skipped")
        return StageResult(name, key, folder, json.loads(marker.read_text())["summary"], skipped=True)
    folder.mkdir(parents=True, exist_ok=True)
    log(f"[{name}] running in {folder}")
    started = time.perf_counter()
    summary = action(folder)
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"stage": name, "key": key, "seconds": seconds, "summary": summary}, indent=2, default=str) + "\n")
    log(f"[{name}] done in {seconds:.1f} s")
    return StageResult(name, key, folder, summary, skipped=False)
