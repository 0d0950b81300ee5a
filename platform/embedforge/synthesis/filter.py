"""Filtering synthetic pairs: teacher-score band, length bounds, exact and near duplicates.

Every removal is counted by reason and written to ``rejected/`` with the reason, so nothing
disappears silently. A row gets the first reason that applies: ``too_short``/``too_long`` ->
``no_teacher_score``/``teacher_score_low``/``teacher_score_high`` -> ``exact_duplicate`` ->
``near_duplicate``. Duplicates are judged among the rows that passed the first two rules only,
and the smallest id of each group of duplicates is kept (``embedforge.synthesis.dedup``), so the
result does not depend on scheduling or blocking.

The stage streams on Ray Data, so the driver's memory does not grow with the input:

1. ``work/rows``: the input shards are read by Ray Data; rows whose ``teacher_score`` this
   teacher did not record are re-scored by teacher actors (none are started, and no model is
   loaded, when every score is reusable); map tasks add each row's rule reason, its exact key
   and its MinHash signature.
2. ``work/duplicates``: every row that passed the rules is hashed into its buckets; a Ray Data
   ``groupby`` on a partition of the bucket id brings whole buckets together, and each bucket
   is resolved on its own.
3. Rows and duplicate verdicts are sorted by id together and stream into the driver, which
   writes ``pairs/`` and ``rejected/`` shards in id order and only keeps counts.

Each step is resumable: a finished step (``work/*.done``) or output shard (``done/``) is not
redone, and a changed config or input is refused (``manifest.json``).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from embedforge.config import ConfigModel, DataPath
from embedforge.session import RayConfig, ensure_ray
from embedforge.synthesis.dedup import BUCKET_SCHEMA, DUPLICATE_SCHEMA, Banding, Signer, bucket_rows, resolve_buckets
from embedforge.synthesis.ray_data import SYNTHESIS_RAY, RayDataConfig
from embedforge.synthesis.report import ScoreBins, write_stage_report
from embedforge.synthesis.resume import check_plan
from embedforge.synthesis.shards import PAIR_SCHEMA, REJECT_SCHEMA, atomic_write_bytes, done_shards, pair_files, write_arrow_shard
from embedforge.synthesis.teacher import PairScorer, TeacherConfig, actor_options, configured_identity, reusable_score, scorer_options


class FilterRules(ConfigModel):
    """Which pairs to keep."""

    min_teacher_score: float = 0.7
    """Keep pairs whose teacher cosine is strictly above this (the recipe's stage-2 rule)."""
    max_teacher_score: float = 1.0
    """Keep pairs at or below this; lower it to drop queries that restate the passage."""
    min_query_words: int = 2
    max_query_words: int = 64
    near_duplicate_jaccard: float | None = Field(0.8, gt=0.0, lt=1.0)
    """Jaccard similarity of two queries' word-shingle sets (after :func:`normalise_query`) at or
    above which the larger id is a near duplicate, estimated with MinHash/LSH; ``None`` disables.
    It replaced ``near_duplicate_threshold`` (a teacher cosine between query vectors)."""
    shingle_words: int = Field(1, ge=1)
    """Words per shingle: 1 compares word sets (suits short queries), larger values word order too."""
    minhash_permutations: int = Field(64, ge=16, le=1024)
    """MinHash signature size: more estimates Jaccard more precisely (error about 1/sqrt(n)) but costs more."""

    @model_validator(mode="before")
    @classmethod
    def no_cosine_threshold(cls, values: object) -> object:
        if isinstance(values, dict) and "near_duplicate_threshold" in values:
            raise ValueError(
                "near_duplicate_threshold (teacher cosine between queries) was replaced by near_duplicate_jaccard "
                "(Jaccard similarity of the queries' word sets, default 0.8); rename the field and choose a Jaccard value"
            )
        return values

    @model_validator(mode="after")
    def banding_exists(self) -> "FilterRules":
        if self.near_duplicate_jaccard is not None:
            try:
                Banding.for_threshold(self.near_duplicate_jaccard, self.minhash_permutations, self.shingle_words)
            except ValueError as error:
                raise ValueError(
                    f"near_duplicate_jaccard {self.near_duplicate_jaccard} with minhash_permutations {self.minhash_permutations}: "
                    f"no LSH banding ({error}); lower the threshold or use more permutations"
                ) from None
        return self


class FilterConfig(ConfigModel):
    """``embedforge filter``: a pairs folder in, a filtered pairs folder out."""

    input_dir: DataPath
    output_dir: DataPath
    rules: FilterRules = FilterRules()
    teacher: TeacherConfig = TeacherConfig()
    shard_size: int = Field(256, ge=1)
    """Input rows per output shard: shard ``i`` holds the kept and removed rows at positions
    ``i*shard_size`` .. in id order."""
    batch_rows: int = Field(4096, ge=1)
    """Rows per batch of the row steps and of the stream into the driver (bounds its memory)."""
    ray: RayConfig = SYNTHESIS_RAY
    """How the stage finds Ray (a local one has 4 logical CPUs unless ``ray.num_cpus`` says otherwise)."""
    ray_data: RayDataConfig = RayDataConfig()


PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)

BUCKET_ROWS_PER_GROUP = 200_000
"""Bucket rows per dedup group: whole buckets are resolved one group (a task's input) at a time."""

ROWS_PER_SORT_PARTITION = 100_000
"""Rows per partition of the final sort by id (one reduce task and output block each)."""

ROW_SCHEMA = pa.schema([field.with_nullable(True) for field in PAIR_SCHEMA])
"""``PAIR_SCHEMA`` with every column nullable: input rows before the rules have judged them."""

WORK_SCHEMA = pa.schema(list(ROW_SCHEMA) + [pa.field("reason", pa.string()), pa.field("duplicate", pa.string())])
"""Rows and duplicate verdicts sorted together by id in step 3 (a verdict has only ``id`` and ``duplicate``)."""


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


def row_reason(query: str | None, score: float | None, rules: FilterRules) -> str | None:
    """The per-row rule that removes a row (``None``: it goes on to the duplicate rules)."""
    return length_reason(query or "", rules) or score_reason(score, rules)


def conform(batch: pa.Table | dict, schema: pa.Schema) -> pa.Table:
    """``batch`` with exactly ``schema``'s columns, in order; missing columns are null."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(batch)
    columns = [table[field.name].cast(field.type) if field.name in table.column_names else pa.nulls(len(table), field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def reusable_mask(table: pa.Table, identity: str) -> np.ndarray:
    return np.array([reusable_score(s, t, identity) for s, t in zip(table["teacher_score"].to_pylist(), table["teacher_model"].to_pylist())], dtype=bool)


def count_scores(batch: pa.Table, identity: str) -> pa.Table:
    """Per batch: how many scores this teacher can reuse and how many it must recompute."""
    reusable = reusable_mask(batch, identity)
    with_query = np.array([isinstance(q, str) and bool(q) for q in batch["query"].to_pylist()], dtype=bool)
    return pa.table({"reused": [int(reusable.sum())], "recomputed": [int((~reusable & with_query).sum())], "not_reusable": [int((~reusable).sum())]})


def select_reusable(batch: pa.Table, identity: str, reusable: bool) -> pa.Table:
    mask = reusable_mask(batch, identity)
    return batch.filter(pa.array(mask if reusable else ~mask))


def rule_columns(batch: pa.Table, rules: FilterRules, banding: Banding | None) -> pa.Table:
    """The row in ``PAIR_SCHEMA`` plus ``reason`` (rule), ``key`` (exact key) and ``signature`` (MinHash bytes)."""
    table = conform(batch, ROW_SCHEMA)
    reasons = [row_reason(q, s, rules) for q, s in zip(table["query"].to_pylist(), table["teacher_score"].to_pylist())]
    keys = [normalise_query(q or "") for q in table["query"].to_pylist()]
    signer = Signer(banding) if banding is not None else None
    signatures = [signer.signature(k).tobytes() if signer is not None and r is None else None for k, r in zip(keys, reasons)]
    return table.append_column("reason", pa.array(reasons, pa.string())).append_column("key", pa.array(keys, pa.string())).append_column("signature", pa.array(signatures, pa.binary()))


def passed_rules(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch["reason"]))


def to_buckets(batch: pa.Table, banding: Banding | None, groups: int) -> pa.Table:
    """Bucket rows of the rows that passed the rules, with ``group`` (bucket id mod ``groups``)."""
    table = bucket_rows(batch["id"].to_pylist(), batch["key"].to_pylist(), batch["signature"].to_pylist(), banding)
    return table.append_column("group", pa.array((table["bucket"].to_numpy() & (2**62 - 1)) % groups, pa.int64()))


def resolve_group(group: pa.Table, threshold: float | None) -> pa.Table:
    return resolve_buckets(group.select(BUCKET_SCHEMA.names), threshold)


def rows_for_merge(batch: pa.Table) -> pa.Table:
    return conform(batch, WORK_SCHEMA)


def verdicts_for_merge(batch: pa.Table) -> pa.Table:
    return conform(batch.select(DUPLICATE_SCHEMA.names), WORK_SCHEMA)


def with_scores(batch: pa.Table) -> pa.Table:
    """A batch back in ``PAIR_SCHEMA`` column types (the teacher actors' pandas turn float32 into float64)."""
    return conform(batch, ROW_SCHEMA)


def step_done(work: Path, name: str) -> bool:
    return (work / f"{name}.done").exists()


def finish_step(work: Path, name: str, payload: dict) -> None:
    atomic_write_bytes(work / f"{name}.done", (json.dumps(payload, sort_keys=True) + "\n").encode())


def fresh(folder: Path) -> str:
    """An empty folder for a step's output (a killed earlier attempt may have left files)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return str(folder)


def scoring_counts(files: list[Path], config: FilterConfig, identity: str) -> dict:
    """How many stored scores this teacher reuses and how many it must recompute (a read of three columns)."""
    import ray

    counts = ray.data.read_parquet([str(f) for f in files], columns=["query", "teacher_score", "teacher_model"]).map_batches(
        count_scores, fn_kwargs={"identity": identity}, batch_format="pyarrow", batch_size=config.batch_rows, num_cpus=config.ray_data.map_num_cpus
    )
    sums = counts.sum(["reused", "recomputed", "not_reusable"]) or {}
    return {name: int(sums.get(f"sum({name})") or 0) for name in ("reused", "recomputed", "not_reusable")}


def score_rows(files: list[Path], config: FilterConfig, identity: str, not_reusable: int, banding: Banding | None):
    """Step 1's dataset: input rows with this teacher's scores and the rule columns. Teacher
    actors are part of it only when some row's score is ``not_reusable`` (a row without a
    query gets none, so its foreign score never reaches the rules)."""
    import ray

    paths = [str(f) for f in files]
    map_options = dict(batch_format="pyarrow", batch_size=config.batch_rows, num_cpus=config.ray_data.map_num_cpus)
    dataset = ray.data.read_parquet(paths)
    if not_reusable:
        reused = dataset.map_batches(select_reusable, fn_kwargs={"identity": identity, "reusable": True}, **map_options)
        to_score = ray.data.read_parquet(paths).map_batches(select_reusable, fn_kwargs={"identity": identity, "reusable": False}, **map_options)
        scored = to_score.map_batches(PairScorer, fn_constructor_kwargs=scorer_options(config.teacher, reuse_scores=True), **actor_options(config.teacher))
        dataset = reused.map_batches(with_scores, **map_options).union(scored.map_batches(with_scores, **map_options))
    return dataset.map_batches(rule_columns, fn_kwargs={"rules": config.rules, "banding": banding}, **map_options)


def find_duplicates(rows_dir: Path, config: FilterConfig, banding: Banding | None, records: int):
    """Step 2's dataset: ``(id, duplicate)`` verdicts, at most one per (row, bucket)."""
    import ray

    groups = max(1, math.ceil(records * (1 + (banding.bands if banding else 0)) / BUCKET_ROWS_PER_GROUP))
    candidates = ray.data.read_parquet(str(rows_dir), columns=["id", "reason", "key", "signature"])
    candidates = candidates.map_batches(passed_rules, batch_format="pyarrow", batch_size=config.batch_rows, num_cpus=config.ray_data.map_num_cpus)
    buckets = candidates.map_batches(to_buckets, fn_kwargs={"banding": banding, "groups": groups}, batch_format="pyarrow", batch_size=config.batch_rows, num_cpus=config.ray_data.map_num_cpus)
    return buckets.groupby("group", num_partitions=groups).map_groups(resolve_group, fn_kwargs={"threshold": config.rules.near_duplicate_jaccard}, batch_format="pyarrow", num_cpus=config.ray_data.map_num_cpus)


class ShardWriter:
    """Writes rows, in id order, into shards of ``shard_size`` input rows; counts and score bins
    are all it keeps beyond the shard being filled. Shards a previous run finished are skipped."""

    def __init__(self, output_dir: Path, shard_size: int):
        self.output_dir, self.shard_size = output_dir, shard_size
        self.finished = done_shards(output_dir)
        self.index, self.filled = 0, 0
        self.kept: list[pa.Table] = []
        self.removed: list[pa.Table] = []
        self.reasons: Counter = Counter()
        self.scores = ScoreBins()
        self.input = 0

    def add(self, rows: pa.Table, reasons: list[str | None]) -> None:
        """``rows`` (``WORK_SCHEMA``) in id order with their final reasons (``None`` keeps)."""
        self.input += len(rows)
        self.scores.add(rows["teacher_score"].to_numpy(zero_copy_only=False).astype(np.float64))
        self.reasons.update(reason for reason in reasons if reason is not None)
        reason_array = pa.array(reasons, pa.string())
        start = 0
        while start < len(rows):
            take = min(self.shard_size - self.filled, len(rows) - start)
            part, part_reasons = rows.slice(start, take), reason_array.slice(start, take)
            keep = pc.is_null(part_reasons)
            self.kept.append(conform(part.filter(keep), PAIR_SCHEMA))
            gone = part.filter(pc.invert(keep))
            gone_reasons = part_reasons.filter(pc.invert(keep))
            self.removed.append(
                pa.table(
                    {
                        "id": gone["id"],
                        "passage_id": gone["passage_id"],
                        "stage": pa.array(["filter"] * len(gone), pa.string()),
                        "reason": pc.binary_join_element_wise("filter:", gone_reasons, ""),
                        "query": gone["query"],
                        "generated_text": pa.array([""] * len(gone), pa.string()),
                    },
                    schema=REJECT_SCHEMA,
                )
            )
            self.filled += take
            start += take
            if self.filled == self.shard_size:
                self.flush()

    def flush(self) -> None:
        kept = pa.concat_tables(self.kept) if self.kept else PAIR_SCHEMA.empty_table()
        removed = pa.concat_tables(self.removed) if self.removed else REJECT_SCHEMA.empty_table()
        if self.index not in self.finished:
            write_arrow_shard(self.output_dir, self.index, kept, removed, {"kept": len(kept), "removed": len(removed)})
        self.index, self.filled, self.kept, self.removed = self.index + 1, 0, [], []

    def close(self) -> None:
        if self.filled or self.index == 0:
            self.flush()


def merge_verdicts(table: pa.Table) -> tuple[pa.Table, list[str | None]]:
    """The rows of ``table`` (whole id runs) and each one's final reason: its rule reason, else
    ``exact_duplicate`` over ``near_duplicate`` from the verdicts."""
    is_verdict = pc.is_valid(table["duplicate"])
    verdicts: dict[str, str] = {}
    verdict_table = table.filter(is_verdict)
    for row_id, duplicate in zip(verdict_table["id"].to_pylist(), verdict_table["duplicate"].to_pylist()):
        if verdicts.get(row_id) != "exact_duplicate":
            verdicts[row_id] = duplicate
    rows = table.filter(pc.invert(is_verdict))
    reasons = [reason or verdicts.get(row_id) for row_id, reason in zip(rows["id"].to_pylist(), rows["reason"].to_pylist())]
    return rows, reasons


def sorted_stream(dataset, records: int) -> None:
    """Size the sort of ``dataset`` (its own context) and keep its blocks in order on the way out."""
    dataset.context.default_hash_shuffle_parallelism = max(1, math.ceil(records / ROWS_PER_SORT_PARTITION))
    dataset.context.execution_options.preserve_order = True


def write_output(work: Path, config: FilterConfig, output_dir: Path, records: int) -> ShardWriter:
    """Step 3: stream rows and verdicts sorted by id into the driver and write the shards."""
    import ray

    writer = ShardWriter(output_dir, config.shard_size)
    if records:
        map_options = dict(batch_format="pyarrow", batch_size=config.batch_rows, num_cpus=config.ray_data.map_num_cpus)
        merged = ray.data.read_parquet(str(work / "rows"), columns=[name for name in WORK_SCHEMA.names if name != "duplicate"]).map_batches(rows_for_merge, **map_options)
        if any((work / "duplicates").glob("*.parquet")):
            merged = merged.union(ray.data.read_parquet(str(work / "duplicates")).map_batches(verdicts_for_merge, **map_options))
        merged = merged.sort("id")
        sorted_stream(merged, records)
        carry: pa.Table | None = None
        for batch in merged.iter_batches(batch_format="pyarrow", batch_size=config.batch_rows):
            table = pa.concat_tables([carry, batch]) if carry is not None else batch
            ids = table["id"].to_numpy(zero_copy_only=False)
            different = np.flatnonzero(ids != ids[-1])
            cut = int(different[-1]) + 1 if different.size else 0  # the last id's run may go on in the next batch
            if cut:
                writer.add(*merge_verdicts(table.slice(0, cut)))
            carry = table.slice(cut)
        if carry is not None and len(carry):
            writer.add(*merge_verdicts(carry))
    writer.close()
    return writer


def input_plan(files: list[Path]) -> tuple[list, int]:
    """What identifies the input without reading its rows: each shard's name, size and row count."""
    plan, records = [], 0
    for path in files:
        rows = pq.ParquetFile(path).metadata.num_rows
        plan.append([path.name, path.stat().st_size, rows])
        records += rows
    return plan, records


def run_filter(config: FilterConfig) -> dict:
    """Filter a pairs folder (resumable: finished steps and output shards are not redone)."""
    started = time.perf_counter()
    output_dir, work = Path(config.output_dir), Path(config.output_dir) / "work"
    files = pair_files(config.input_dir)
    plan, records = input_plan(files)
    check_plan(output_dir, "filter", config, plan, records=records)
    if step_done(work, "filter") and (output_dir / "stats.json").exists():
        return json.loads((output_dir / "stats.json").read_text())
    identity = configured_identity(config.teacher)
    threshold = config.rules.near_duplicate_jaccard
    banding = Banding.for_threshold(threshold, config.rules.minhash_permutations, config.rules.shingle_words) if threshold is not None else None
    ensure_ray(config.ray)
    seconds = {"setup": time.perf_counter() - started}
    if not step_done(work, "rows"):
        scoring = {"reused": 0, "recomputed": 0}
        if records:  # empty shards (a generator whose every record was rejected) need no teacher
            counts = scoring_counts(files, config, identity)
            scoring = {"reused": counts["reused"], "recomputed": counts["recomputed"]}
            score_rows(files, config, identity, counts["not_reusable"], banding).write_parquet(fresh(work / "rows"))
        else:
            fresh(work / "rows")
        finish_step(work, "rows", scoring)
    scoring = json.loads((work / "rows.done").read_text())
    seconds["rows"] = time.perf_counter() - started - sum(seconds.values())
    if not step_done(work, "duplicates"):
        folder = fresh(work / "duplicates")
        if records:
            find_duplicates(work / "rows", config, banding, records).write_parquet(folder)
        finish_step(work, "duplicates", {})
    seconds["duplicates"] = time.perf_counter() - started - sum(seconds.values())
    writer = write_output(work, config, output_dir, records)
    seconds["write"] = time.perf_counter() - started - sum(seconds.values())
    by_reason = dict(sorted(writer.reasons.items()))
    removed = sum(by_reason.values())
    stats = {
        "stage": "filter",
        "input": writer.input,
        "kept": writer.input - removed,
        "removed": removed,
        "removed_by_reason": by_reason,
        "scoring": {"teacher_model": identity if records else "", **scoring},
        "rules": config.rules.model_dump(),
        "near_duplicates": {"method": "minhash-lsh", "bands": banding.bands, "rows_per_band": banding.rows} if banding else None,
        "seconds": round(time.perf_counter() - started, 2),
        "step_seconds": {name: round(value, 2) for name, value in seconds.items()},
        "counts": {
            "filter": {
                "input": writer.input,
                "teacher scores reused": scoring["reused"],
                "teacher scores recomputed": scoring["recomputed"],
                "kept": writer.input - removed,
                **{f"removed {k}": v for k, v in by_reason.items()},
            }
        },
    }
    stats = write_stage_report(output_dir, stats, writer.scores, "Filter: teacher cosine of input pairs", threshold=config.rules.min_teacher_score)
    finish_step(work, "filter", {})
    return stats

