"""Persona files: jsonl, one persona a line (Persona Hub's format, or this project's default).

A line is either a JSON object with a ``persona`` field (Persona Hub) or a JSON string.
The project ships ``embedforge/resources/personas.jsonl``, a small set written for it.
"""

from __future__ import annotations

from pathlib import Path

from embedforge.json_files import read_jsonl

DEFAULT_PERSONAS = Path(__file__).resolve().parents[1] / "resources" / "personas.jsonl"


def load_personas(path: str | Path | None = None) -> list[str]:
    """Personas in file order; a bad line is an error naming the file and line."""
    path = Path(path) if path is not None else DEFAULT_PERSONAS
    if not path.is_file():
        raise FileNotFoundError(f"persona file not found: {path}")
    personas: list[str] = []
    for line_number, value in read_jsonl(path):
        persona = value.get("persona") if isinstance(value, dict) else value
        if not isinstance(persona, str) or not persona.strip():
            raise ValueError(f"{path}:{line_number}: expected a non-empty string or an object with a 'persona' string")
        personas.append(" ".join(persona.split()))
    if not personas:
        raise ValueError(f"{path}: no personas")
    return personas
