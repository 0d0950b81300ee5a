"""Request and response bodies of the HTTP API, as pydantic models (they make the OpenAPI spec).

``/v1/embeddings`` follows OpenAI's embeddings API; ``input_type`` and ``instruction`` are
embedforge extensions for instruction-aware query embeddings. ``/v1/rerank`` follows
Cohere's and Jina's rerank APIs. Errors follow OpenAI's ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictStr


QUERY_INPUT_TYPES = frozenset({"query", "search_query"})
"""``input_type`` values that embed texts as queries (embedforge's and Cohere's spellings)."""


class Request(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do (clients send extras)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class EmbeddingRequest(Request):
    input: StrictStr | list[StrictStr] = Field(description="A text, or a list of texts, to embed.")
    model: StrictStr = Field(description="The served embedder's name (see `GET /v1/models`).")
    dimensions: int | None = Field(None, description="Matryoshka size: keep the first `dimensions` components, re-normalised.")
    encoding_format: Literal["float", "base64"] = Field("float", description="`base64`: little-endian float32 bytes.")
    user: str | None = Field(None, description="Accepted for compatibility; unused.")
    input_type: Literal["query", "document", "search_query", "search_document", "classification", "clustering"] = Field(
        "document",
        description="embedforge extension. `query` wraps each text in the query template with `instruction` "
        "(or the model's default instruction); `document` embeds texts as they are. Cohere's spellings work too: "
        "`search_query` is `query`; `search_document`, `classification` and `clustering` are `document`.",
    )
    prompt_name: Literal["query", "document"] | None = Field(
        None, description="TEI / sentence-transformers spelling: `query` is `input_type=query`; `document` changes nothing."
    )
    instruction: str | None = Field(
        None, description="embedforge extension. The task instruction for queries; giving one implies `input_type=query`."
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class RerankDocument(Request):
    text: StrictStr


class RerankRequest(Request):
    query: StrictStr
    documents: list[StrictStr | RerankDocument] = Field(description="Strings, or objects with a `text` field.")
    model: StrictStr | None = Field(None, description="The served reranker's name; optional, as in Jina's API.")
    top_n: int | None = Field(None, ge=1, description="Return only the best `top_n` results.")
    return_documents: bool = Field(False, description="Include each document's text in its result.")
    instruction: str | None = Field(None, description="Task instruction for the judge; the model's default when omitted.")


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "embedforge"
    kind: Literal["embedder", "reranker"]
    dimensions: int | None = None
    max_length: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def encode_embedding(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A float32 vector as a JSON list or as base64 of its little-endian bytes (OpenAI's format)."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def truncate_rows(matrix: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka on a ``(N, H)`` array: the first ``dimensions`` columns, rows re-normalised."""
    if dimensions is None or dimensions == matrix.shape[1]:
        return matrix
    head = matrix[:, :dimensions]
    return (head / np.maximum(np.linalg.norm(head, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def ranked_results(scores: np.ndarray, documents: list[str], top_n: int | None, return_documents: bool) -> list[RerankResult]:
    """Results sorted by score (ties keep input order), cut to ``top_n``."""
    order = sorted(range(len(scores)), key=lambda index: -float(scores[index]))[: top_n or len(scores)]
    return [
        RerankResult(
            index=index,
            relevance_score=float(scores[index]),
            document=RerankDocument(text=documents[index]) if return_documents else None,
        )
        for index in order
    ]
