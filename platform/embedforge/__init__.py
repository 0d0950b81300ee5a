"""embedforge: corpus to Qwen3-recipe embedding and reranking models and endpoints, on Ray."""

__version__ = "0.1.0"
