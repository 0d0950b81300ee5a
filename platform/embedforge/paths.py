"""Where the shared data and the Qwen3 tokenizer live.

The project never downloads: real data is read in place from ``../shared/data`` beside
the repository (or wherever ``EMBEDFORGE_DATA`` points), and YAML configs refer to it as
``${EMBEDFORGE_DATA}/...``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "EMBEDFORGE_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The shared data folder: ``$EMBEDFORGE_DATA``, else ``../shared/data`` beside the repo."""
    configured = os.environ.get(DATA_ENV_VAR)
    candidates = [Path(configured)] if configured else []
    candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise FileNotFoundError(
        f"shared data folder not found (tried {', '.join(map(str, candidates))}); "
        f"set {DATA_ENV_VAR} to the folder that holds retrieval/, sts/, tokenizer/ ..."
    )


def qwen3_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer files (vocab.json, merges.txt, tokenizer_config.json)."""
    return shared_data_dir() / "tokenizer" / "qwen3"


def expand_path(value: str | os.PathLike) -> Path:
    """Expand ``${EMBEDFORGE_DATA}``, other environment variables and ``~`` in a path."""
    text = str(value)
    if f"${{{DATA_ENV_VAR}}}" in text or f"${DATA_ENV_VAR}" in text:
        text = text.replace(f"${{{DATA_ENV_VAR}}}", str(shared_data_dir()))
        text = text.replace(f"${DATA_ENV_VAR}", str(shared_data_dir()))
    return Path(os.path.expanduser(os.path.expandvars(text)))
