"""The synthesis prompts: every template that asks the LLM for training data, in one place.

Two steps per passage, following the Qwen3 Embedding recipe (see ``RECIPE.md``):

1. **Brief** (the paper's "configuration", :data:`BRIEF_TEMPLATE`): given the passage and the five personas a
   teacher embedder retrieved for it, the LLM answers with JSON ``{"character",
   "question_type", "difficulty"}``.
2. **Query** (one template per task in :data:`QUERY_TEMPLATES`): from that character's
   perspective, the LLM writes JSON ``{"query"}`` of a given type, difficulty, length in
   words and language. The query language may differ from the corpus language, which gives
   cross-lingual pairs.

The recipe does not publish its prompts for bitext mining, classification and STS; the ones
here are this project's own, documented in ``docs/synthesis.md``. Each task carries the
embedding instruction its pairs are trained with (:data:`TASK_INSTRUCTIONS`).
"""

from __future__ import annotations

from typing import Literal, Sequence

TaskType = Literal["retrieval", "bitext", "classification", "sts"]
TASK_TYPES: tuple[str, ...] = ("retrieval", "bitext", "classification", "sts")
QUESTION_TYPES: tuple[str, ...] = ("keywords", "acquire_knowledge", "summary", "yes_or_no", "background")
DIFFICULTIES: tuple[str, ...] = ("high_school", "university", "phd")

TASK_INSTRUCTIONS: dict[str, str] = {
    "retrieval": "Given a question, retrieve passages that answer the question",
    "bitext": "Retrieve parallel sentences",
    "classification": "Identify the topic or theme of the given text",
    "sts": "Retrieve semantically similar text",
}
"""The instruction stored with every pair of a task (Qwen3 query format, English)."""

QUESTION_TYPE_GUIDE = {
    "keywords": "a few keywords, as a person types into a search box",
    "acquire_knowledge": "a question asking for a fact or an explanation the passage gives",
    "summary": "a request for an overview of what the passage is about",
    "yes_or_no": "a question the passage answers with yes or no",
    "background": "a question about the context or background the passage provides",
}

DIFFICULTY_GUIDE = {
    "high_school": "a high school student",
    "university": "a university student",
    "phd": "a domain expert with a PhD",
}

SYSTEM_PROMPT = "You write training data for text embedding models. Answer with one JSON object and nothing else."

BRIEF_TEMPLATE = """Read the passage and the candidate characters below.

Passage:
\"\"\"
{passage}
\"\"\"

Candidate characters:
{characters}

Choose the one character most likely to look for this passage, the type of query they would write, and its difficulty.
- "character": copy one candidate character exactly.
- "question_type": one of {question_types}.
- "difficulty": one of {difficulties}.

Answer with JSON only: {{"character": "...", "question_type": "...", "difficulty": "..."}}"""

QUERY_TEMPLATES: dict[str, str] = {
    "retrieval": """You are {character}.

Passage:
\"\"\"
{passage}
\"\"\"

Write a search query that this passage answers, from your perspective.
- Query type: {question_type} ({question_type_guide}).
- Difficulty: written by {difficulty_guide}.
- Length: about {length} words.
- Language: {language}.
- Do not copy sentences from the passage; a reader must need the passage to answer it.

Answer with JSON only: {{"query": "..."}}""",
    "bitext": """You are a professional translator.

Passage ({corpus_language}):
\"\"\"
{passage}
\"\"\"

Translate the first one or two sentences of the passage into {language}, faithfully and fluently, in about {length} words.
If {language} is the passage's language, paraphrase them instead, keeping every fact.

Answer with JSON only: {{"query": "..."}}""",
    "classification": """You are {character}.

Passage:
\"\"\"
{passage}
\"\"\"

Write a short new text (a headline, a question or a comment, about {length} words, in {language}) that belongs to the same topic category as the passage but does not repeat its wording.
Write it for a reader at the level of {difficulty_guide}.

Answer with JSON only: {{"query": "..."}}""",
    "sts": """You are {character}.

Passage:
\"\"\"
{passage}
\"\"\"

Pick the central claim of the passage and restate it in your own words as one sentence of about {length} words in {language}.
The sentence must mean the same as the claim, with different wording.

Answer with JSON only: {{"query": "..."}}""",
}

BRIEF_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "character": {"type": "string"},
        "question_type": {"type": "string", "enum": list(QUESTION_TYPES)},
        "difficulty": {"type": "string", "enum": list(DIFFICULTIES)},
    },
    "required": ["character", "question_type", "difficulty"],
    "additionalProperties": False,
}
"""JSON schema of the brief step with ``character`` a free string; a job sends
:func:`brief_schema`, which narrows it to the row's candidates."""

QUERY_SCHEMA: dict = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1}},
    "required": ["query"],
    "additionalProperties": False,
}
"""JSON schema of the query step (structured output for vLLM and OpenAI)."""


def brief_schema(personas: Sequence[str]) -> dict:
    """The brief step's JSON schema for one passage: ``character`` is one of its candidates.

    Sent as structured output (vLLM guided decoding, OpenAI ``response_format``), the enum
    keeps the model from inventing a persona, which would cost the row an
    ``unknown_character`` rejection.
    """
    if not personas:
        raise ValueError("the brief step needs at least one candidate persona")
    properties = dict(BRIEF_SCHEMA["properties"], character={"type": "string", "enum": list(dict.fromkeys(personas))})
    return dict(BRIEF_SCHEMA, properties=properties)


def check_task(task: str) -> str:
    if task not in QUERY_TEMPLATES:
        raise ValueError(f"unknown task type {task!r}; choose from {', '.join(TASK_TYPES)}")
    return task


def render_brief_prompt(passage: str, personas: Sequence[str]) -> str:
    """The brief-step user message for one passage and its candidate personas."""
    if not personas:
        raise ValueError("the brief step needs at least one candidate persona")
    characters = "\n".join(f"{index + 1}. {persona}" for index, persona in enumerate(personas))
    return BRIEF_TEMPLATE.format(
        passage=passage,
        characters=characters,
        question_types=", ".join(QUESTION_TYPES),
        difficulties=", ".join(DIFFICULTIES),
    )


def render_query_prompt(
    task: str,
    passage: str,
    *,
    character: str,
    question_type: str,
    difficulty: str,
    length: int,
    language: str,
    corpus_language: str = "English",
) -> str:
    """The query-step user message of ``task`` for one passage and its chosen brief."""
    if question_type not in QUESTION_TYPE_GUIDE:
        raise ValueError(f"unknown question_type {question_type!r}; choose from {', '.join(QUESTION_TYPES)}")
    if difficulty not in DIFFICULTY_GUIDE:
        raise ValueError(f"unknown difficulty {difficulty!r}; choose from {', '.join(DIFFICULTIES)}")
    return QUERY_TEMPLATES[check_task(task)].format(
        passage=passage,
        character=character,
        question_type=question_type,
        question_type_guide=QUESTION_TYPE_GUIDE[question_type],
        difficulty_guide=DIFFICULTY_GUIDE[difficulty],
        length=length,
        language=language,
        corpus_language=corpus_language,
    )


def chat_messages(user_message: str) -> list[dict[str, str]]:
    """The chat turns every engine sends: the fixed system prompt, then the user message."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message}]
