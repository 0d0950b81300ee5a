"""The synthesis prompt templates render with every task, question type and difficulty."""

import json

import pytest

from embedforge.synthesis.prompts import (
    BRIEF_SCHEMA,
    DIFFICULTIES,
    QUERY_SCHEMA,
    QUESTION_TYPES,
    TASK_INSTRUCTIONS,
    TASK_TYPES,
    chat_messages,
    render_brief_prompt,
    render_query_prompt,
)

PASSAGE = "Aspirin irreversibly inhibits cyclooxygenase-1, reducing thromboxane A2 synthesis in platelets."


def test_brief_prompt_lists_personas_and_choices():
    text = render_brief_prompt(PASSAGE, ["A nurse", "A pharmacist"])
    assert PASSAGE in text
    assert "1. A nurse\n2. A pharmacist" in text
    assert all(choice in text for choice in QUESTION_TYPES + DIFFICULTIES)
    assert text.endswith('{"character": "...", "question_type": "...", "difficulty": "..."}')
    assert "{" not in text.replace('{"character": "...", "question_type": "...", "difficulty": "..."}', "")
    with pytest.raises(ValueError, match="persona"):
        render_brief_prompt(PASSAGE, [])


@pytest.mark.parametrize("task", TASK_TYPES)
@pytest.mark.parametrize("question_type", QUESTION_TYPES)
def test_query_prompt_renders_every_task(task, question_type):
    text = render_query_prompt(
        task, PASSAGE, character="A pharmacist", question_type=question_type, difficulty="phd", length=12, language="German", corpus_language="English"
    )
    assert PASSAGE in text and "German" in text and "12 words" in text
    assert text.endswith('{"query": "..."}')
    assert "{character}" not in text and "{length}" not in text
    if task != "bitext":
        assert "A pharmacist" in text
    if task == "retrieval":
        assert question_type in text and "a domain expert with a PhD" in text


def test_every_task_has_an_instruction_and_bad_choices_fail():
    assert set(TASK_INSTRUCTIONS) == set(TASK_TYPES)
    with pytest.raises(ValueError, match="unknown task"):
        render_query_prompt("ranking", PASSAGE, character="x", question_type="summary", difficulty="phd", length=5, language="English")
    with pytest.raises(ValueError, match="question_type"):
        render_query_prompt("retrieval", PASSAGE, character="x", question_type="trivia", difficulty="phd", length=5, language="English")


def test_schemas_are_json_and_messages_have_a_system_turn():
    assert json.loads(json.dumps(BRIEF_SCHEMA))["required"] == ["character", "question_type", "difficulty"]
    assert QUERY_SCHEMA["required"] == ["query"]
    messages = chat_messages("hello")
    assert [m["role"] for m in messages] == ["system", "user"] and messages[1]["content"] == "hello"
