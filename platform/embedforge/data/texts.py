"""Reading a list of texts: one per line, or jsonl records with a ``text`` field."""

from __future__ import annotations

import json
from pathlib import Path


def read_texts(path: str | Path) -> list[str]:
    """Texts in file order. ``.jsonl`` files need a string ``text`` field on every line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return lines
    texts = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}:{line_number}: blank line in a jsonl file")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: invalid JSON: {error.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{line_number}: expected an object with a string 'text' field")
        texts.append(record["text"])
    return texts
