"""Synthesis records: deterministic ids and plans, and the pure row functions of each step.

A record is one (passage, variant) pair to synthesise. Its id, task type, query language
and query length all derive from a hash of the passage id, the variant and the seed, so a
re-run plans exactly the same records, and a resumed job can skip finished ones.
Every function here works on plain dicts and runs without Ray.

A step's parse keeps the first rejection: a row rejected before the step stays skipped with
its reason, and a row the engine failed on (``generation_error`` set, no ``attempts`` needed)
is rejected as ``no_generation``.
"""

from __future__ import annotations

import hashlib
import random
from typing import Sequence

from pydantic import model_validator

from embedforge.config import ConfigModel
from embedforge.synthesis.parsing import parse_brief, parse_query
from embedforge.synthesis.prompts import QUERY_SCHEMA, TASK_INSTRUCTIONS, TASK_TYPES, brief_schema, render_brief_prompt, render_query_prompt


class PlanConfig(ConfigModel):
    """What to synthesise per passage: the task mix, languages and query lengths."""

    queries_per_passage: int = 1
    tasks: dict[str, float] = {"retrieval": 1.0}
    """Task type weights; keys from retrieval, bitext, classification, sts."""
    query_languages: dict[str, float] = {"English": 1.0}
    """Query language weights; a language other than the corpus's gives cross-lingual pairs."""
    query_lengths: list[int] = [5, 10, 15, 25]
    """Requested query lengths in words, drawn uniformly."""
    min_query_words: int = 1
    max_query_words: int = 64
    reject_copies: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def known_tasks(self) -> "PlanConfig":
        unknown = sorted(set(self.tasks) - set(TASK_TYPES))
        if unknown:
            raise ValueError(f"tasks: unknown task type(s) {unknown}; choose from {list(TASK_TYPES)}")
        return self


def record_id(passage_id: str, variant: int, seed: int) -> str:
    """A stable 16-hex-digit id for one synthesis record."""
    return hashlib.sha1(f"{passage_id}\x1f{variant}\x1f{seed}".encode()).hexdigest()[:16]


def weighted_choice(rng: random.Random, weights: dict[str, float]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[name] for name in names], k=1)[0]


def plan_records(passages: Sequence[dict], plan: PlanConfig, corpus_language: str = "English") -> list[dict]:
    """One row per (passage, variant), in passage order, with everything sampling decided."""
    records = []
    for passage in passages:
        for variant in range(plan.queries_per_passage):
            rid = record_id(passage["passage_id"], variant, plan.seed)
            rng = random.Random(int(rid, 16))
            task = weighted_choice(rng, plan.tasks)
            records.append(
                {
                    "id": rid,
                    "passage_id": passage["passage_id"],
                    "source_doc_id": passage["doc_id"],
                    "positive": passage["passage"],
                    "task_type": task,
                    "instruction": TASK_INSTRUCTIONS[task],
                    "language": weighted_choice(rng, plan.query_languages),
                    "corpus_language": corpus_language,
                    "query_length": rng.choice(plan.query_lengths),
                    "generation_seed": rng.randrange(2**31 - 16),
                }
            )
    return records


def brief_step_prompt(row: dict) -> dict:
    """Add the brief-step ``prompt`` (personas must already be on the row)."""
    return dict(row, prompt=render_brief_prompt(row["positive"], list(row["personas"])))


def brief_step_schema(row: dict) -> dict:
    """The brief step's structured-output schema: ``character`` is one of the row's personas."""
    return brief_schema(list(row["personas"]))


def query_step_schema(row: dict) -> dict:
    return QUERY_SCHEMA


def brief_rejection(row: dict, text: str) -> str | None:
    return parse_brief(text, list(row["personas"]))[1]


def generation_attempts(row: dict) -> int:
    """Generations the engine spent on the row; a row Ray returned failed has no ``attempts``."""
    attempts = row.get("attempts")
    return 0 if attempts is None or row.get("generation_error") else int(attempts)


def apply_brief_step(row: dict) -> dict:
    """Parse the brief-step generation into columns, or record why it is rejected."""
    text = row.get("generated_text") or ""
    if row.get("rejection"):
        config, reason = None, None
    elif row.get("generation_error"):
        config, reason = None, "brief:no_generation"
    else:
        config, parsed_reason = parse_brief(text, list(row["personas"]))
        reason = None if parsed_reason is None else f"brief:{parsed_reason}"
    config = config or {"character": None, "question_type": None, "difficulty": None}
    return dict(
        row,
        persona=config["character"],
        question_type=config["question_type"],
        difficulty=config["difficulty"],
        brief_text=text,
        brief_attempts=generation_attempts(row),
        rejection=row.get("rejection") or reason,
    )


def query_step_prompt(row: dict) -> dict:
    """Add the query-step ``prompt``; rows already rejected get an empty prompt (skipped)."""
    if row.get("rejection"):
        return dict(row, prompt="")
    prompt = render_query_prompt(
        row["task_type"],
        row["positive"],
        character=row["persona"],
        question_type=row["question_type"],
        difficulty=row["difficulty"],
        length=int(row["query_length"]),
        language=row["language"],
        corpus_language=row["corpus_language"],
    )
    return dict(row, prompt=prompt, generation_seed=int(row["generation_seed"]) + 1000)


class QueryRules:
    """The query-step acceptance rules, picklable so the hf engine can retry with them."""

    def __init__(self, min_words: int, max_words: int, reject_copies: bool):
        self.min_words, self.max_words, self.reject_copies = min_words, max_words, reject_copies

    def parse(self, row: dict, text: str) -> tuple[str | None, str | None]:
        return parse_query(text, row["positive"], min_words=self.min_words, max_words=self.max_words, reject_copies=self.reject_copies)

    def __call__(self, row: dict, text: str) -> str | None:
        return self.parse(row, text)[1]


def apply_query_step(row: dict, rules: QueryRules) -> dict:
    """Parse the query-step generation into ``query``, or record why it is rejected."""
    if row.get("rejection"):
        return dict(row, query=None, query_text=None, query_attempts=0)
    text = row.get("generated_text") or ""
    query, reason = (None, "no_generation") if row.get("generation_error") else rules.parse(row, text)
    return dict(
        row,
        query=query,
        query_text=text,
        query_attempts=generation_attempts(row),
        rejection=None if reason is None else f"query:{reason}",
    )
