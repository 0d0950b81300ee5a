"""Parsing LLM generations into briefs (persona, question type, difficulty) and queries, or into a rejection reason.

Generations are untrusted text. Each parser returns ``(value, None)`` or ``(None, reason)``
and never raises on bad output, so one bad generation cannot fail a job; the reasons (the
keys of :data:`REJECTION_REASONS`) are counted in the stats.
"""

from __future__ import annotations

import json
import re
from typing import Sequence

from embedforge.synthesis.prompts import DIFFICULTIES, QUESTION_TYPES

REJECTION_REASONS = {
    "malformed_json": "no JSON object could be read from the generation",
    "missing_key": "the JSON object lacks a required key",
    "bad_value": "a value has the wrong type or is not one of the allowed choices",
    "unknown_character": "the character is not one of the candidate personas",
    "empty_query": "the query is empty or whitespace",
    "too_short": "the query has fewer words than allowed",
    "too_long": "the query has more words than allowed",
    "copies_passage": "the query copies a long span of the passage",
    "no_generation": "the engine returned nothing (an error or an empty answer)",
}

FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
WORD = re.compile(r"\w+", re.UNICODE)


def extract_json_object(text: str | None) -> dict | None:
    """The first JSON object in ``text``: bare, inside a code fence, or after a reasoning block."""
    if not text:
        return None
    text = THINK.sub("", text)
    candidates = [match.group(1) for match in FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in (index for index, char in enumerate(candidate) if char == "{"):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def normalise_choice(value: object) -> str | None:
    return value.strip().lower().replace(" ", "_").replace("-", "_") if isinstance(value, str) else None


def json_fields(text: str | None) -> tuple[dict | None, str | None]:
    """The generation's JSON object with lower-cased keys, or why there is none."""
    if not text or not text.strip():
        return None, "no_generation"
    obj = extract_json_object(text)
    if obj is None:
        return None, "malformed_json"
    return {str(key).strip().lower(): value for key, value in obj.items()}, None


def parse_brief(text: str | None, personas: Sequence[str]) -> tuple[dict | None, str | None]:
    """``{"character", "question_type", "difficulty"}`` from a brief-step generation.

    Keys are matched case-insensitively (the paper writes ``Character``, ``Question_Type``);
    the character must be one of ``personas`` (an exact or case-insensitive match).
    """
    fields, reason = json_fields(text)
    if fields is None:
        return None, reason
    for key in ("character", "question_type", "difficulty"):
        if key not in fields:
            return None, "missing_key"
    character = fields["character"]
    if not isinstance(character, str) or not character.strip():
        return None, "bad_value"
    by_lower = {persona.strip().lower(): persona for persona in personas}
    if character.strip().lower() not in by_lower:
        return None, "unknown_character"
    question_type, difficulty = normalise_choice(fields["question_type"]), normalise_choice(fields["difficulty"])
    if question_type not in QUESTION_TYPES or difficulty not in DIFFICULTIES:
        return None, "bad_value"
    return {"character": by_lower[character.strip().lower()], "question_type": question_type, "difficulty": difficulty}, None


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def longest_shared_run(query_words: Sequence[str], passage_words: Sequence[str]) -> int:
    """Length of the longest run of consecutive words the query shares with the passage."""
    best, previous = 0, [0] * (len(passage_words) + 1)
    for query_word in query_words:
        current = [0] * (len(passage_words) + 1)
        for j, passage_word in enumerate(passage_words, start=1):
            if query_word == passage_word:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def copies_passage(query: str, passage: str, max_shared_fraction: float = 0.8, min_run: int = 8) -> bool:
    """Whether the query is (mostly) a verbatim span of the passage.

    A query copies the passage when its longest run of words shared with the passage is at
    least ``min_run`` words and covers ``max_shared_fraction`` of the query, or when the
    whole query appears verbatim and is longer than a few keywords.
    """
    query_words, passage_words = words(query), words(passage)
    if not query_words:
        return False
    run = longest_shared_run(query_words, passage_words)
    if run == len(query_words) and run > 4:
        return True
    return run >= min_run and run / len(query_words) >= max_shared_fraction


def parse_query(
    text: str | None,
    passage: str,
    *,
    min_words: int = 1,
    max_words: int = 64,
    reject_copies: bool = True,
) -> tuple[str | None, str | None]:
    """The query string from a query-step generation, or why it is rejected."""
    fields, reason = json_fields(text)
    if fields is None:
        return None, reason
    if "query" not in fields:
        return None, "missing_key"
    query = fields["query"]
    if not isinstance(query, str):
        return None, "bad_value"
    query = " ".join(query.split())
    if not query:
        return None, "empty_query"
    count = len(query.split())
    if count < min_words:
        return None, "too_short"
    if count > max_words:
        return None, "too_long"
    if reject_copies and copies_passage(query, passage):
        return None, "copies_passage"
    return query, None
