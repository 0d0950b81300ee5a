"""Synthesis: passages to (query, positive) pairs with a two-step LLM prompt, on Ray Data.

Flow of :func:`run_synthesize`: read and chunk the corpus; plan deterministic records;
skip the shards a previous run finished; then one streaming Ray Data pipeline over the
rest: persona retrieval (teacher actors) -> brief step (engine) -> parse -> query
step (engine) -> parse -> teacher score (teacher actors). The driver writes each shard as
soon as all its records are back, so a killed run loses at most the shards in flight.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Iterator

from embedforge.config import ConfigModel, DataPath
from embedforge.session import RayConfig, ensure_ray
from embedforge.synthesis.chat_client import request_counts
from embedforge.synthesis.corpus import CorpusConfig, read_passages
from embedforge.synthesis.engines import GeneratorConfig, ProcessorFactory, build_generation_stage
from embedforge.synthesis.personas import load_personas
from embedforge.synthesis.records import (
    PlanConfig,
    QueryRules,
    apply_brief_step,
    apply_query_step,
    brief_rejection,
    brief_step_prompt,
    brief_step_schema,
    plan_records,
    query_step_prompt,
    query_step_schema,
)
from embedforge.synthesis.ray_data import SYNTHESIS_RAY, RayDataConfig, completed_shards, from_rows
from embedforge.synthesis.report import write_stage_report
from embedforge.synthesis.resume import Shard, check_plan, total_counts, write_shards
from embedforge.synthesis.shards import chunks, read_pairs
from embedforge.synthesis.teacher import PairScorer, PersonaRetriever, TeacherConfig, actor_options, scorer_options


class SynthesizeConfig(ConfigModel):
    """``embedforge synthesize``: corpus in, pairs shards + stats + report out."""

    output_dir: DataPath
    corpus: CorpusConfig
    personas: DataPath | None = None
    """Persona jsonl (Persona Hub works); ``None`` is the project's default set."""
    personas_per_passage: int = 5
    plan: PlanConfig = PlanConfig()
    generator: GeneratorConfig = GeneratorConfig()
    teacher: TeacherConfig = TeacherConfig()
    shard_size: int = 64
    """Records per output shard: the unit of resumption."""
    ray: RayConfig = SYNTHESIS_RAY
    """How the stage finds Ray (a local one has 4 logical CPUs unless ``ray.num_cpus`` says otherwise)."""
    ray_data: RayDataConfig = RayDataConfig()


def build_dataset(records: list[dict], config: SynthesizeConfig, personas: list[str], processor_factory: ProcessorFactory | None = None):
    """The lazy Ray Data pipeline from planned records to scored (or rejected) rows.

    ``processor_factory`` builds the ``vllm`` engine's processors (default
    ``ray.data.llm.build_processor``).
    """
    rules = QueryRules(config.plan.min_query_words, config.plan.max_query_words, config.plan.reject_copies)
    light = dict(num_cpus=config.ray_data.map_num_cpus)
    dataset = from_rows(records, config.ray_data.rows_per_block)
    dataset = dataset.map_batches(
        PersonaRetriever,
        fn_constructor_kwargs=dict(model=config.teacher.model, personas=personas, top_k=config.personas_per_passage, batch_size=config.teacher.batch_size),
        **actor_options(config.teacher),
    )
    dataset = dataset.map(brief_step_prompt, **light)
    dataset = build_generation_stage(config.generator, schema=brief_step_schema, validator=brief_rejection, processor_factory=processor_factory)(dataset)
    dataset = dataset.map(apply_brief_step, **light)
    dataset = dataset.map(query_step_prompt, **light)
    dataset = build_generation_stage(config.generator, schema=query_step_schema, validator=rules, processor_factory=processor_factory)(dataset)
    dataset = dataset.map(apply_query_step, fn_kwargs=dict(rules=rules), **light)
    return dataset.map_batches(PairScorer, fn_constructor_kwargs=scorer_options(config.teacher), **actor_options(config.teacher))


def pair_row(row: dict, config: SynthesizeConfig) -> dict:
    return dict(
        row,
        negatives=[],
        negative_ids=[],
        negative_scores=[],
        positive_ids=[row["source_doc_id"]],
        engine=config.generator.engine,
        model=config.generator.model,
        teacher_score=float(row["teacher_score"]),
        attempts=int(row["brief_attempts"]) + int(row["query_attempts"]),
    )


def reject_row(row: dict) -> dict:
    step = row["rejection"].split(":")[0]
    return dict(
        id=row["id"],
        passage_id=row["passage_id"],
        stage="synthesize",
        reason=row["rejection"],
        query=row.get("query"),
        generated_text=(row.get("query_text") if step == "query" else row.get("brief_text")) or "",
    )


def shard_stats(rows: list[dict]) -> dict:
    reasons = Counter(row["rejection"] for row in rows if row.get("rejection"))
    stats = {"attempted": len(rows), "accepted": len(rows) - sum(reasons.values()), "rejected": dict(sorted(reasons.items()))}
    if any("request_log" in row for row in rows):  # the openai engine: HTTP outcomes of both steps
        stats["requests"] = request_counts(row.get("request_log") for row in rows)
    return stats


def synthesized_shards(pending: dict[int, list[dict]], config: SynthesizeConfig, processor_factory: ProcessorFactory | None) -> Iterator[Shard]:
    """The pending shards' records through :func:`build_dataset`, each shard as soon as its last record is back."""
    ensure_ray(config.ray)
    todo = [row for shard in pending.values() for row in shard]
    for index, rows in completed_shards(build_dataset(todo, config, load_personas(config.personas), processor_factory), pending, key="id"):
        pairs = [pair_row(r, config) for r in rows if not r.get("rejection")]
        rejected = [reject_row(r) for r in rows if r.get("rejection")]
        yield Shard(index, pairs, rejected, shard_stats(rows))


def run_synthesize(config: SynthesizeConfig, processor_factory: ProcessorFactory | None = None) -> dict:
    """Run (or resume) synthesis; returns the stats that ``stats.json`` also holds.

    ``processor_factory`` builds the ``vllm`` engine's processors (default
    ``ray.data.llm.build_processor``).
    """
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    passages, corpus_report = read_passages(config.corpus)
    records = plan_records(passages, config.plan, config.corpus.language)
    shards = chunks(records, config.shard_size)
    check_plan(output_dir, "synthesize", config, [r["id"] for r in records], records=len(records), shards=len(shards))
    make = partial(synthesized_shards, config=config, processor_factory=processor_factory)
    done = write_shards(output_dir, shards, make, f"synthesize: {len(records)} records")

    totals = total_counts(done)
    reasons, requests = totals.get("rejected", {}), totals.get("requests", {})
    scores = read_pairs(output_dir).column("teacher_score").to_pylist()
    stats = {
        "stage": "synthesize",
        "engine": config.generator.engine,
        "model": config.generator.model,
        "corpus": corpus_report.to_dict(),
        "records": len(records),
        "shards": len(shards),
        "shards_done": len(done),
        "attempted": totals["attempted"],
        "accepted": totals["accepted"],
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "seconds": round(time.perf_counter() - started, 2),
        "counts": {
            "corpus": corpus_report.counts(),
            "synthesize": {"attempted": totals["attempted"], "accepted": totals["accepted"], **{f"rejected {k}": v for k, v in sorted(reasons.items())}},
        },
    }
    if requests:
        stats["requests"] = dict(requests)
        stats["counts"]["requests"] = dict(requests)
    return write_stage_report(output_dir, stats, scores, "Synthesis: teacher cosine of accepted pairs")
