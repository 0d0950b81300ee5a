"""Reading and writing the small JSON files that describe a saved model folder.

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


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def require_model_folder(folder: str | Path) -> Path:
    """The folder as a ``Path``, or a clear error when it holds no Hugging Face model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json, so this is not a Hugging Face model folder")
    return folder
