"""Parquet shards of training pairs: the schema, atomic writes, and what a resumed run skips.

Every stage (synthesize, filter, mine) writes ``pairs/shard-NNNNN.parquet`` plus
``done/shard-NNNNN.json`` (that shard's counts). The ``done`` file is written last, by an
atomic rename, so a shard counts as finished only when both files are complete; a killed
job leaves at most a half-written ``.tmp`` file, which a re-run overwrites.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

PAIR_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("positive", pa.string(), nullable=False),
        pa.field("negatives", pa.list_(pa.string())),
        pa.field("instruction", pa.string()),
        pa.field("task_type", pa.string()),
        pa.field("language", pa.string()),
        pa.field("corpus_language", pa.string()),
        pa.field("source_doc_id", pa.string()),
        pa.field("passage_id", pa.string()),
        pa.field("positive_ids", pa.list_(pa.string())),
        pa.field("negative_ids", pa.list_(pa.string())),
        pa.field("negative_scores", pa.list_(pa.float32())),
        pa.field("persona", pa.string()),
        pa.field("question_type", pa.string()),
        pa.field("difficulty", pa.string()),
        pa.field("query_length", pa.int32()),
        pa.field("engine", pa.string()),
        pa.field("model", pa.string()),
        pa.field("teacher_score", pa.float32()),
        pa.field("teacher_model", pa.string()),
        pa.field("attempts", pa.int32()),
    ]
)
"""The columns of every pairs shard; ``docs/synthesis.md`` describes each one."""

REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("passage_id", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("query", pa.string()),
        pa.field("generated_text", pa.string()),
    ]
)
"""Rejected or removed records, one row each, with the reason (``step:reason``)."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def rows_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def write_shard(output_dir: Path, index: int, pairs: Sequence[dict], rejected: Sequence[dict], counts: dict) -> None:
    """Write one finished shard from row dicts: its pairs, its rejections, then its ``done`` marker."""
    write_arrow_shard(output_dir, index, rows_table(pairs, PAIR_SCHEMA), rows_table(rejected, REJECT_SCHEMA), counts)


def write_arrow_shard(output_dir: Path, index: int, pairs: pa.Table, rejected: pa.Table, counts: dict) -> None:
    """:func:`write_shard` for Arrow tables already in ``PAIR_SCHEMA`` / ``REJECT_SCHEMA`` (no per-row Python)."""
    name = shard_name(index)
    write_parquet(output_dir / "pairs" / f"{name}.parquet", pairs)
    write_parquet(output_dir / "rejected" / f"{name}.parquet", rejected)
    atomic_write_bytes(output_dir / "done" / f"{name}.json", (json.dumps(counts, indent=1, sort_keys=True) + "\n").encode())


def done_shards(output_dir: Path) -> set[int]:
    """Indices of the shards a previous run finished."""
    folder = Path(output_dir) / "done"
    return {int(path.stem.split("-")[1]) for path in folder.glob("shard-*.json")} if folder.is_dir() else set()


def shard_counts(output_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((Path(output_dir) / "done").glob("shard-*.json"))]


SCALING_FIELDS = {
    "ray": True,
    "ray_data": True,
    "output_dir": True,
    "batch_rows": True,
    "teacher": {"concurrency", "num_cpus", "num_gpus"},
    "generator": {"hf": {"concurrency", "num_cpus", "num_gpus"}, "vllm": {"concurrency"}, "openai": {"concurrency", "qps", "max_in_flight", "num_cpus", "max_requests"}},
}
"""Config fields that change how fast a run goes, not what it writes: a resumed run may change them."""


def config_identity(config) -> dict:
    """The parts of a stage config that decide its output (everything but scaling knobs)."""
    return config.model_dump(mode="json", exclude={key: value for key, value in SCALING_FIELDS.items() if key in type(config).model_fields})


def plan_fingerprint(items: Iterable[object]) -> str:
    digest = hashlib.sha1()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def check_manifest(output_dir: Path, manifest: dict) -> None:
    """Record the plan of a run; refuse to resume into a folder planned differently."""
    path = Path(output_dir) / "manifest.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("fingerprint") != manifest["fingerprint"]:
            raise ValueError(
                f"{path}: this output folder holds a run with a different plan (config or input changed); "
                "use a new output_dir, or delete the folder to start over"
            )
        return
    atomic_write_bytes(path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def pair_files(folder: Path) -> list[Path]:
    """The parquet files of a stage's finished pairs shards, in shard order (nothing is read)."""
    folder = Path(folder)
    if not (folder / "manifest.json").exists():
        raise FileNotFoundError(f"{folder}: not a pairs folder (no manifest.json); run `embedforge synthesize` first")
    return [folder / "pairs" / f"{shard_name(i)}.parquet" for i in sorted(done_shards(folder))]


def read_pairs(folder: Path) -> pa.Table:
    """All finished pairs shards of a stage's output folder, in shard order."""
    tables = [pq.read_table(path, schema=PAIR_SCHEMA) for path in pair_files(folder)]
    return pa.concat_tables(tables) if tables else PAIR_SCHEMA.empty_table()


def read_rejected(folder: Path) -> pa.Table:
    folder = Path(folder)
    tables = [pq.read_table(folder / "rejected" / f"{shard_name(i)}.parquet", schema=REJECT_SCHEMA) for i in sorted(done_shards(folder))]
    return pa.concat_tables(tables) if tables else REJECT_SCHEMA.empty_table()


def chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]
