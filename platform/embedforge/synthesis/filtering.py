"""Filtering synthetic pairs: teacher-score band, length bounds, exact and near duplicates.

Every removal is counted by reason and written to ``rejected/`` with the reason, so nothing
disappears silently. Rules run in a fixed order and each row gets the first reason that
applies: ``length`` -> ``teacher_score`` -> ``exact_duplicate`` -> ``near_duplicate``. Among
duplicates the first row in id order is kept, so the result does not depend on scheduling.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from embedforge.config import ConfigModel, DataPath
from embedforge.synthesis.report import write_report
from embedforge.synthesis.session import RayConfig, ensure_ray, from_rows
from embedforge.synthesis.shards import check_manifest, config_identity, chunks, done_shards, plan_fingerprint, read_pairs, write_shard
from embedforge.synthesis.teacher import PairScorer, TeacherConfig, actor_options, reusable_score, scorer_options


class FilterRules(ConfigModel):
    """Which pairs to keep."""

    min_teacher_score: float = 0.7
    """Keep pairs whose teacher cosine is strictly above this (the recipe's stage-2 rule)."""
    max_teacher_score: float = 1.0
    """Keep pairs at or below this; lower it to drop queries that restate the passage."""
    min_query_words: int = 2
    max_query_words: int = 64
    near_duplicate_threshold: float | None = 0.95
    """Teacher cosine at or above which two queries are near duplicates; ``None`` disables."""


class FilterConfig(ConfigModel):
    """``embedforge filter``: a pairs folder in, a filtered pairs folder out."""

    input_dir: DataPath
    output_dir: DataPath
    rules: FilterRules = FilterRules()
    teacher: TeacherConfig = TeacherConfig()
    shard_size: int = 256
    ray: RayConfig = RayConfig()


PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalise_query(query: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: the key for exact duplicates."""
    return " ".join(PUNCTUATION.sub(" ", query.lower()).split())


def length_reason(query: str, rules: FilterRules) -> str | None:
    count = len(query.split())
    if count < rules.min_query_words:
        return "too_short"
    if count > rules.max_query_words:
        return "too_long"
    return None


def score_reason(score: float | None, rules: FilterRules) -> str | None:
    if score is None or not math.isfinite(score):
        return "no_teacher_score"
    if score <= rules.min_teacher_score:
        return "teacher_score_low"
    if score > rules.max_teacher_score:
        return "teacher_score_high"
    return None


def duplicate_reasons(queries: Sequence[str], vectors: np.ndarray | None, candidates: Sequence[bool], threshold: float | None) -> list[str | None]:
    """``exact_duplicate`` / ``near_duplicate`` per row, keeping the first of each group.

    Only rows with ``candidates[i]`` true take part (rows already removed for another reason
    neither count as duplicates nor shadow others). ``vectors`` are normalised query vectors.
    """
    reasons: list[str | None] = [None] * len(queries)
    seen: set[str] = set()
    neighbours: dict[int, np.ndarray] = {}
    if threshold is not None and vectors is not None and len(queries):
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        limits, _, ids = index.range_search(np.ascontiguousarray(vectors, dtype=np.float32), threshold)
        neighbours = {i: ids[limits[i] : limits[i + 1]] for i in range(len(queries))}
    kept_set: set[int] = set()
    for i, query in enumerate(queries):
        if not candidates[i]:
            continue
        key = normalise_query(query)
        if key in seen:
            reasons[i] = "exact_duplicate"
            continue
        if any(int(j) in kept_set for j in neighbours.get(i, ()) if int(j) != i):
            reasons[i] = "near_duplicate"
            continue
        seen.add(key)
        kept_set.add(i)
    return reasons


def filter_reasons(rows: Sequence[dict], vectors: np.ndarray | None, rules: FilterRules) -> list[str | None]:
    """The removal reason of every row (``None`` keeps it); rows must be in id order."""
    reasons = [length_reason(row["query"], rules) or score_reason(row.get("teacher_score"), rules) for row in rows]
    duplicates = duplicate_reasons([row["query"] for row in rows], vectors, [reason is None for reason in reasons], rules.near_duplicate_threshold)
    return [reason or duplicate for reason, duplicate in zip(reasons, duplicates)]


SCORED_COLUMNS = ("id", "query", "positive", "instruction", "task_type", "teacher_score", "teacher_model")


def score_and_embed(rows: list[dict], config: FilterConfig) -> tuple[list[dict], np.ndarray, dict]:
    """This teacher's scores and query vectors, computed by a teacher actor pool.

    A row keeps its ``teacher_score`` only if this same teacher (model and instruction
    policy, ``teacher_model``) recorded it; every other row is re-scored. Returns the rows,
    the query vectors (N, D) and the scoring stats: the teacher and how many scores were
    ``reused`` and ``recomputed``.
    """
    dataset = from_rows([{name: row.get(name) for name in SCORED_COLUMNS} for row in rows], config.ray)
    dataset = dataset.map_batches(PairScorer, fn_constructor_kwargs=scorer_options(config.teacher, reuse_scores=True, embed_queries=True), **actor_options(config.teacher))
    computed = {row["id"]: row for row in dataset.iter_rows()}
    counts, teachers, scored = Counter(), set(), []
    for row in rows:
        new = computed[row["id"]]
        teacher = new["teacher_model"] if isinstance(new["teacher_model"], str) else None
        if teacher is not None:
            teachers.add(teacher)
            counts["reused" if reusable_score(row.get("teacher_score"), row.get("teacher_model"), teacher) else "recomputed"] += 1
        scored.append(dict(row, teacher_score=float(new["teacher_score"]), teacher_model=teacher))
    vectors = np.stack([np.asarray(computed[row["id"]]["embedding"], dtype=np.float32) for row in rows])
    return scored, vectors, {"teacher_model": ", ".join(sorted(teachers)), "reused": counts["reused"], "recomputed": counts["recomputed"]}


def run_filter(config: FilterConfig) -> dict:
    """Filter a pairs folder (resumable: finished output shards are not rewritten)."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    rows = sorted(read_pairs(config.input_dir).to_pylist(), key=lambda row: row["id"])
    fingerprint = plan_fingerprint([config_identity(config), [r["id"] for r in rows]])
    check_manifest(output_dir, {"stage": "filter", "fingerprint": fingerprint, "records": len(rows)})
    reasons: list[str | None] = []
    scoring = {"teacher_model": "", "reused": 0, "recomputed": 0}
    if rows:
        ensure_ray(config.ray)
        rows, vectors, scoring = score_and_embed(rows, config)
        reasons = filter_reasons(rows, vectors, config.rules)
    kept = [row for row, reason in zip(rows, reasons) if reason is None]
    removed = [
        dict(id=row["id"], passage_id=row.get("passage_id"), stage="filter", reason=f"filter:{reason}", query=row["query"], generated_text="")
        for row, reason in zip(rows, reasons)
        if reason is not None
    ]
    finished = done_shards(output_dir)  # removed rows are written with the last shard
    kept_shards = chunks(kept, config.shard_size) or [[]]
    for index, shard in enumerate(kept_shards):
        if index in finished:
            continue
        shard_removed = removed if index == len(kept_shards) - 1 else []
        write_shard(output_dir, index, shard, shard_removed, {"kept": len(shard), "removed": len(shard_removed)})
    by_reason = Counter(reason for reason in reasons if reason is not None)
    stats = {
        "stage": "filter",
        "input": len(rows),
        "kept": len(kept),
        "removed": len(removed),
        "removed_by_reason": dict(sorted(by_reason.items())),
        "scoring": scoring,
        "rules": config.rules.model_dump(),
        "seconds": round(time.perf_counter() - started, 2),
        "counts": {
            "filter": {
                "input": len(rows),
                "teacher scores reused": scoring["reused"],
                "teacher scores recomputed": scoring["recomputed"],
                "kept": len(kept),
                **{f"removed {k}": v for k, v in sorted(by_reason.items())},
            }
        },
    }
    return write_report(output_dir, stats, [row["teacher_score"] for row in rows], "Filter: teacher cosine of input pairs", threshold=config.rules.min_teacher_score)
