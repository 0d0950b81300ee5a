"""The small JSON files that describe a saved model folder (read here; written with
``embedforge.json_files.write_json``).

A folder saved by embedforge is a Hugging Face folder (``config.json``, weights, tokenizer)
plus sentence-transformers files (``modules.json``, ``1_Pooling/config.json``,
``config_sentence_transformers.json``) plus ``embedforge.json`` with the settings that the
other files cannot express (template, attention, Matryoshka dimensions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SETTINGS_FILE = "embedforge.json"


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    """The parsed file, or ``None`` when it does not exist; bad JSON names the file."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None


def require_model_folder(folder: str | Path) -> Path:
    """The folder as a ``Path``, or a clear error when it holds no Hugging Face model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json, so this is not a Hugging Face model folder")
    return folder


def folder_kind(folder: Path) -> tuple[str, str] | None:
    """``(kind, why)`` when the folder's files say it holds an embedder or a reranker, else ``None``.

    Read from ``embedforge.json``'s ``kind``, a sequence-classification architecture in
    ``config.json`` (a cross-encoder reranker), or ``modules.json`` (a sentence-transformers
    embedder); no weights are loaded, so commands can check a model before loading it.
    """
    saved = read_json(folder / SETTINGS_FILE)
    if isinstance(saved, dict) and saved.get("kind") in ("embedder", "reranker"):
        return saved["kind"], f"{SETTINGS_FILE} has kind: {saved['kind']}"
    architectures = (read_json(folder / "config.json") or {}).get("architectures") or []
    if any("ForSequenceClassification" in name for name in architectures):
        return "reranker", f"config.json architectures {architectures}"
    if (folder / "modules.json").exists():
        return "embedder", "it is a sentence-transformers folder (modules.json)"
    return None


def require_kind(folder: str | Path, kind: str) -> Path:
    """The model folder, or a one-line error when its files say it is the other kind of model."""
    folder = require_model_folder(folder)
    found = folder_kind(folder)
    if found is not None and found[0] != kind:
        raise ValueError(f"{folder}: is a {found[0]} ({found[1]}), but this command needs an {kind}")
    return folder
