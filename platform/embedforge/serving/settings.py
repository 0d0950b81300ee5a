"""The settings of a served application: the ``args`` that ``build_app`` receives.

Deployment-level knobs (replicas, autoscaling, queue limits) stay in the Serve config's
``deployments:`` section, where ``serve deploy`` can change them without a code change;
these settings only say what to load and how requests are checked and batched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from embedforge.config import ConfigModel, DataPath

DEFAULT_API_KEY_ENV = "EMBEDFORGE_API_KEYS"


class BatchSettings(ConfigModel):
    """Dynamic batching of one model deployment."""

    max_batch_size: int = Field(64, ge=1)
    """Texts (or query-document pairs) in one forward pass."""
    max_batch_tokens: int = Field(16384, ge=8)
    """Padded tokens in one forward pass: ``longest sequence x batch rows``; bounds memory and wasted compute."""
    batch_wait_timeout_s: float = Field(0.005, ge=0)
    """How long a batch waits to fill once its first item arrives."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads of a replica; ``None`` keeps torch's default (all cores)."""
    device: str | None = None
    """``cpu``, ``cuda``...; ``None`` picks CUDA when the replica has a GPU."""


class ServeSettings(ConfigModel):
    """What ``embedforge serve`` and ``build_app`` load, and the request limits they enforce."""

    embedder: str
    """Embedder folder, or a packaged model name such as ``all-MiniLM-L6-v2``."""
    reranker: str | None = None
    """Reranker folder; without it ``/v1/rerank`` answers 404."""
    embedder_name: str | None = None
    """The ``model`` name clients send; defaults to the folder's name."""
    reranker_name: str | None = None
    embedder_batching: BatchSettings = BatchSettings()
    reranker_batching: BatchSettings = BatchSettings(max_batch_size=32)
    max_inputs: int = Field(512, ge=1)
    """Most texts in one embeddings request, and most documents in one rerank request."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Larger request bodies get 413."""
    over_length: Literal["truncate", "reject"] = "truncate"
    """A text longer than the model's ``max_length`` tokens is truncated, or rejected with 400."""
    api_key_env: str = DEFAULT_API_KEY_ENV
    """Environment variable holding comma-separated bearer keys (read where ``build_app`` runs)."""
    api_key_file: DataPath | None = None
    """File with one bearer key per line; keys from the file and the variable both work."""

    @model_validator(mode="after")
    def _check_batches(self) -> "ServeSettings":
        for name in ("embedder_batching", "reranker_batching"):
            batching: BatchSettings = getattr(self, name)
            if batching.max_batch_tokens < batching.max_batch_size:
                raise ValueError(f"{name}.max_batch_tokens must be at least max_batch_size")
        return self


def settings_problems(settings: ServeSettings) -> list[str]:
    """``field: reason`` for each model or key file that is missing or of the wrong kind; loads nothing."""
    from embedforge.models.folders import require_kind
    from embedforge.models.registry import resolve_model

    problems = []
    for field, kind in (("embedder", "embedder"), ("reranker", "reranker")):
        reference = getattr(settings, field)
        if reference is not None:
            try:
                require_kind(resolve_model(reference), kind)
            except (OSError, ValueError) as error:
                problems.append(f"{field}: {error}")
    if settings.api_key_file is not None and not settings.api_key_file.is_file():
        problems.append(f"api_key_file: {settings.api_key_file} does not exist")
    return problems


def model_name(reference: str | Path, given: str | None) -> str:
    """The public model name: the given one, else the folder's (or packaged model's) name."""
    return given or Path(str(reference).rstrip("/")).name
