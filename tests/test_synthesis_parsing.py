"""A table of malformed generations: each is rejected with its reason, never an exception."""

import pytest

from embedforge.synthesis.parsing import REJECTION_REASONS, copies_passage, extract_json_object, parse_brief, parse_query

PERSONAS = ["A nurse on a cardiology ward", "A pharmacist"]
PASSAGE = (
    "Aspirin irreversibly inhibits cyclooxygenase-1 in platelets, which reduces the synthesis of thromboxane A2 "
    "and so lowers the risk of arterial thrombosis in patients with coronary disease."
)

BRIEF_CASES = [
    ('{"character": "A pharmacist", "question_type": "summary", "difficulty": "phd"}', None),
    ('```json\n{"Character": "a PHARMACIST", "Question_Type": "Yes or no", "Difficulty": "University"}\n```', None),
    ('<think>hmm {"x": 1}</think> sure: {"character": "A pharmacist", "question_type": "background", "difficulty": "high-school"} done', None),
    ("", "no_generation"),
    ("   \n", "no_generation"),
    (None, "no_generation"),
    ("I think the pharmacist would ask a summary question.", "malformed_json"),
    ('{"character": "A pharmacist", "question_type": "summary", "difficulty": "phd"', "malformed_json"),
    ("[1, 2, 3]", "malformed_json"),
    ('{"character": "A pharmacist", "question_type": "summary"}', "missing_key"),
    ('{"character": "A chef", "question_type": "summary", "difficulty": "phd"}', "unknown_character"),
    ('{"character": "A pharmacist", "question_type": "trivia", "difficulty": "phd"}', "bad_value"),
    ('{"character": "A pharmacist", "question_type": "summary", "difficulty": 3}', "bad_value"),
    ('{"character": 5, "question_type": "summary", "difficulty": "phd"}', "bad_value"),
    (" terminate l炸 AHL shrimp evade seizing amazingaceyÄ métierber(Schedulers", "malformed_json"),
]


@pytest.mark.parametrize("text,reason", BRIEF_CASES)
def test_brief_generations(text, reason):
    brief, got = parse_brief(text, PERSONAS)
    assert got == reason
    assert got is None or got in REJECTION_REASONS
    if reason is None:
        assert brief["character"] == "A pharmacist"
        assert brief["question_type"] in ("summary", "yes_or_no", "background")
        assert brief["difficulty"] in ("phd", "university", "high_school")
    else:
        assert brief is None


QUERY_CASES = [
    ('{"query": "Does aspirin lower clot risk in heart patients?"}', None),
    ('Here you go: {"Query": "  low dose  aspirin\\nplatelets "}', None),
    ('{"query": ""}', "empty_query"),
    ('{"query": "   "}', "empty_query"),
    ('{"question": "why"}', "missing_key"),
    ('{"query": ["a", "list"]}', "bad_value"),
    ('{"query": null}', "bad_value"),
    ('{"query": "' + " ".join(["word"] * 70) + '"}', "too_long"),
    ('{"query": "Aspirin irreversibly inhibits cyclooxygenase-1 in platelets, which reduces the synthesis of thromboxane A2"}', "copies_passage"),
    ('{"query": "why does aspirin', "malformed_json"),
    ("not json at all", "malformed_json"),
    ("", "no_generation"),
]


@pytest.mark.parametrize("text,reason", QUERY_CASES)
def test_query_generations(text, reason):
    query, got = parse_query(text, PASSAGE, min_words=1, max_words=64)
    assert got == reason
    assert got is None or got in REJECTION_REASONS
    assert (query is None) == (reason is not None)
    if query is not None:
        assert query == " ".join(query.split())


def test_too_short_and_copy_rules():
    assert parse_query('{"query": "aspirin"}', PASSAGE, min_words=2)[1] == "too_short"
    assert parse_query('{"query": "aspirin"}', PASSAGE, min_words=1)[1] is None
    assert not copies_passage("aspirin platelets", PASSAGE)  # a few keywords are not a copy
    assert copies_passage("which reduces the synthesis of thromboxane A2", PASSAGE)
    assert parse_query('{"query": "which reduces the synthesis of thromboxane A2"}', PASSAGE, reject_copies=False)[1] is None


def test_extract_json_object_takes_the_first_object():
    assert extract_json_object('noise {"a": 1} {"b": 2}') == {"a": 1}
    assert extract_json_object('{"a": {"nested": [1, 2]}}') == {"a": {"nested": [1, 2]}}
    assert extract_json_object("{ broken } {\"ok\": true}") == {"ok": True}
