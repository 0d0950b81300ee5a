"""Embedding and reranking models: thin, typed wrappers around Hugging Face backbones."""

from embedforge.models.embedder import Embedder, EmbedderSettings
from embedforge.models.reranker import CrossEncoderReranker, RerankerSettings, YesNoReranker, load_reranker

__all__ = [
    "CrossEncoderReranker",
    "Embedder",
    "EmbedderSettings",
    "RerankerSettings",
    "YesNoReranker",
    "load_reranker",
]
