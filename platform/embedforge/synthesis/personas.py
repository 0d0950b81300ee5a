"""Persona files: jsonl, one persona a line (Persona Hub's format, or this project's default).

A line is either a JSON object with a ``persona`` field (Persona Hub) or a JSON string.
The project ships ``embedforge/resources/personas.jsonl``, a small set written for it.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_PERSONAS = Path(__file__).resolve().parents[1] / "resources" / "personas.jsonl"


def load_personas(path: str | Path | None = None) -> list[str]:
    """Personas in file order; a bad line is an error naming the file and line."""
    path = Path(path) if path is not None else DEFAULT_PERSONAS
    if not path.is_file():
        raise FileNotFoundError(f"persona file not found: {path}")
    personas: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: invalid JSON: {error.msg}") from None
            persona = value.get("persona") if isinstance(value, dict) else value
            if not isinstance(persona, str) or not persona.strip():
                raise ValueError(f"{path}:{line_number}: expected a non-empty string or an object with a 'persona' string")
            personas.append(" ".join(persona.split()))
    if not personas:
        raise ValueError(f"{path}: no personas")
    return personas
