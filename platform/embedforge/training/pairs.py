"""Training rows: ``query``, ``positive``, ``negatives`` (a list), ``instruction`` and ``symmetric``.

This is the format the synthesis and mining stages write, as ``.jsonl`` or ``.parquet``.
:func:`read_pair_rows` checks every row (errors name the file and line) and keeps the rows
that have enough hard negatives, counting the rest; nothing is dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedforge.json_files import read_jsonl
from embedforge.prompts import SYMMETRIC_TASK_TYPES

PAIR_FIELDS = ("query", "positive", "negatives", "instruction")


@dataclass
class PairRows:
    """The usable rows of one dataset and how many were skipped, by reason."""

    rows: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)


def pair_files(path: Path) -> list[Path]:
    """The data files of a dataset: the file itself, or the ``.jsonl``/``.parquet`` files of a folder.

    A ``synthesize``/``filter``/``mine`` output folder works too: its shards are in ``pairs/``.
    """
    if path.is_file():
        return [path]
    if path.is_dir() and (path / "pairs").is_dir():
        path = path / "pairs"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet"))
        if files:
            return files
        raise FileNotFoundError(f"{path}: folder holds no .jsonl or .parquet files")
    raise FileNotFoundError(f"training data not found: {path}")


def iter_raw_rows(path: Path):
    """``(where, record)`` for every row of a jsonl or parquet file; ``where`` is ``file:line``."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, record in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {index}", record
        return
    for number, record in read_jsonl(path):
        yield f"{path}:{number}", record


def normalise_row(record: Any, where: str, instruction: str | None) -> dict[str, Any]:
    """A checked row with a list of negatives; ``instruction`` (when given) replaces the row's.

    ``symmetric`` is true for rows of a symmetric task (``task_type`` sts or bitext), whose
    positive and negatives get the instruction too, as the recipe formats STS and bitext.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a row must be a JSON object, got {type(record).__name__}")
    for name in ("query", "positive"):
        if not isinstance(record.get(name), str) or not record[name].strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string")
    negatives = record.get("negatives") or []
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise ValueError(f"{where}: field 'negatives' must be a list of strings")
    row_instruction = record.get("instruction")
    if row_instruction is not None and not isinstance(row_instruction, str):
        raise ValueError(f"{where}: field 'instruction' must be a string or null")
    return {
        "query": record["query"],
        "positive": record["positive"],
        "negatives": [n for n in negatives if n != record["positive"]],
        "instruction": instruction if instruction is not None else row_instruction,
        "symmetric": record.get("task_type") in SYMMETRIC_TASK_TYPES,
    }


def read_pair_rows(path: Path, *, num_negatives: int, instruction: str | None = None) -> PairRows:
    """All usable rows of a dataset, each with exactly ``num_negatives`` negatives (the first ones).

    Rows with fewer negatives (after removing copies of the positive) are skipped and counted
    under ``too_few_negatives``.
    """
    kept, skipped = [], {"too_few_negatives": 0}
    for file in pair_files(path):
        for where, record in iter_raw_rows(file):
            row = normalise_row(record, where, instruction)
            if len(row["negatives"]) < num_negatives:
                skipped["too_few_negatives"] += 1
                continue
            row["negatives"] = row["negatives"][:num_negatives]
            kept.append(row)
    return PairRows(kept, {reason: count for reason, count in skipped.items() if count})


def write_pair_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as jsonl (the format :func:`read_pair_rows` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps({name: row.get(name) for name in PAIR_FIELDS}) + "\n")
    return path
