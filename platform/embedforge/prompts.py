"""The model-facing text templates of the Qwen3 Embedding recipe, exactly as released.

Train and serve with the same strings: they are stored with every saved model, and the
synthesis prompts (which write training data) live in ``embedforge.synthesis.prompts``.
"""

from __future__ import annotations

QUERY_TEMPLATE = "Instruct: {task}\nQuery:{query}"
"""Qwen3-Embedding query format; note there is no space after ``Query:``."""

DEFAULT_RETRIEVAL_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

SYMMETRIC_TASK_TYPES = frozenset({"sts", "bitext"})
"""Task types whose two sides are texts of one kind: the instruction goes on both sides."""

END_OF_TEXT = "<|endoftext|>"
"""The token appended for last-token pooling (id 151643 in Qwen3; not ``<|im_end|>``)."""

RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on "
    'the Query and the Instruct provided. Note that the answer can only be "yes" or '
    '"no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def format_query(query: str, instruction: str | None, template: str = QUERY_TEMPLATE) -> str:
    """Prefix a query with its task instruction; ``None`` leaves it bare (documents)."""
    return query if instruction is None else template.format(task=instruction, query=query)


def query_prompt_prefix(instruction: str, template: str = QUERY_TEMPLATE) -> str:
    """The prefix sentence-transformers prepends for ``prompt_name="query"``."""
    return template.format(task=instruction, query="")


def rerank_body(query: str, document: str, instruction: str) -> str:
    """The user turn of the reranker prompt, between :data:`RERANK_PREFIX` and the suffix."""
    return RERANK_BODY.format(instruction=instruction, query=query, document=document)
