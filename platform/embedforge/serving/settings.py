"""The settings of a served application: the ``args`` that ``build_app`` receives.

Deployment-level knobs (replicas, autoscaling, queue limits) stay in the Serve config's
``deployments:`` section, where ``serve deploy`` can change them without a code change;
these settings only say what to load and how requests are checked and batched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from embedforge.config import ConfigModel, DataPath

DEFAULT_API_KEY_ENV = "EMBEDFORGE_API_KEYS"
APP = "embedforge"
"""The Serve application of the embedder, on route ``/``."""
RERANKER_APP = "embedforge-reranker"
"""The Serve application of the reranker, on route ``/v1/rerank``."""


class BatchSettings(ConfigModel):
    """Continuous batching of one model deployment (:mod:`embedforge.serving.batching`)."""

    max_batch_size: int = Field(64, ge=1)
    """Texts (or query-document pairs) the model thread takes at once; one larger request is taken alone."""
    max_batch_tokens: int = Field(16384, ge=8)
    """Padded tokens in one forward pass: ``longest sequence x batch rows``; bounds memory and wasted compute."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads of a replica; ``None`` is one per CPU the replica reserves (``num_cpus``)."""
    device: str | None = None
    """``cpu``, ``cuda``...; ``None`` picks CUDA when the replica has a GPU."""


class ServeSettings(ConfigModel):
    """What ``embedforge serve`` and ``build_app`` load, and the request limits they enforce."""

    embedder: str
    """Embedder folder, or a packaged model name such as ``all-MiniLM-L6-v2``."""
    reranker: str | None = None
    """Reranker folder; without it ``/v1/rerank`` answers 404."""
    embedder_name: str | None = None
    """The ``model`` name clients send (then the only one); default: see :func:`served_names`."""
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


PIPELINE_STAGE_FOLDER = re.compile(r"^(?P<stage>[a-z][a-z0-9_]*)-[0-9a-f]{10}$")
"""A pipeline stage's folder, ``<run_dir>/<stage>-<key>`` (``embedforge.pipeline.stages``)."""


def served_names(reference: str | Path, folder: str | Path, given: str | None = None) -> list[str]:
    """Every ``model`` name a request may use for one served model; responses carry the first.

    A given name is the only one. Otherwise, in order: a packaged model's names
    (``all-MiniLM-L6-v2``, ``sentence-transformers/all-MiniLM-L6-v2``; also when its folder is
    given), a built tiny model's name, ``<run>/<stage>`` for a pipeline result (a folder inside
    ``<run_dir>/<stage>-<key>/``), and the folder's own name (what was served before, so
    existing clients keep working) except for packaged models, whose folder is just ``model``.
    """
    if given:
        return [given]
    from embedforge.models.registry import BUILT_MODELS, PACKAGED_MODELS, resolve_model

    text = str(reference).rstrip("/")
    folder = Path(folder).resolve()
    packaged = [name for name in PACKAGED_MODELS if name == text or _same_folder(resolve_model, name, folder)]
    names = sorted(packaged, key=lambda name: (name != text, len(name)))
    if text in BUILT_MODELS:
        names.append(text)
    for part in (folder, *folder.parents):
        match = PIPELINE_STAGE_FOLDER.match(part.name)
        if match and part.parent.name:
            names.append(f"{part.parent.name}/{match['stage']}")
            break
    if not packaged:
        names.append(Path(text).name)
    return list(dict.fromkeys(names))


def _same_folder(resolve_model, name: str, folder: Path) -> bool:
    try:
        return Path(resolve_model(name)).resolve() == folder
    except FileNotFoundError:
        return False


def model_name(reference: str | Path, given: str | None) -> str:
    """The name responses carry: the given one, else the first of :func:`served_names`."""
    return served_names(reference, reference, given)[0]
