"""Reading a list of texts: one per line, JSON lines with a ``text`` field, or a JSON array.

``.jsonl``, ``.ndjson`` and ``.json`` (any case) are JSON: one record per line, or for a
``.json`` file whose content starts with ``[``, one array of strings or ``{"text": ...}``
objects. Any other file is plain text, one text per line. JSON is never embedded as raw text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embedforge.json_files import read_jsonl

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def read_texts(path: str | Path) -> list[str]:
    """Texts in file order; errors name the file and line. An empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    data = path.read_bytes()
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 (byte {error.start}: {error.reason})") from None
    if path.suffix.lower() not in JSON_SUFFIXES:
        texts = content.splitlines()
    elif path.suffix.lower() == ".json" and content.lstrip().startswith("["):
        texts = _json_array_texts(path, content)
    else:
        texts = _json_lines_texts(path)
    if not texts:
        raise ValueError(f"{path}: no texts in the file")
    return texts


def _json_lines_texts(path: Path) -> list[str]:
    texts = []
    for line_number, record in read_jsonl(path, allow_blank=False):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{line_number}: expected an object with a string 'text' field")
        texts.append(record["text"])
    return texts


def _json_array_texts(path: Path, content: str) -> list[str]:
    try:
        records: Any = json.loads(content)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    texts = []
    for index, record in enumerate(records):
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            record = record["text"]
        if not isinstance(record, str):
            raise ValueError(f"{path}: item {index} of the array: expected a string or an object with a string 'text' field")
        texts.append(record)
    return texts
