"""Qwen3 backbones built from a config: tiny ones for tests, real shapes for GPU benchmarks.

There is no model hub here, so every Qwen3 model the project trains from scratch is built
from a :class:`transformers.Qwen3Config` with the real Qwen3 tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel, Qwen3Config

from embedforge.models.embedder import Embedder, EmbedderSettings
from embedforge.models.reranker import RerankerSettings, YesNoReranker
from embedforge.paths import qwen3_tokenizer_dir
from embedforge.prompts import DEFAULT_RETRIEVAL_INSTRUCTION
from embedforge.tokenization import load_tokenizer

QWEN3_VOCAB_SIZE = 151936

QWEN3_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128),
    "8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128),
}


def qwen3_config(shape: str = "tiny", *, max_position_embeddings: int = 32768) -> Qwen3Config:
    """A Qwen3 config of a named shape (``tiny``, ``0.6b``, ``4b``, ``8b``)."""
    if shape not in QWEN3_SHAPES:
        raise ValueError(f"unknown Qwen3 shape {shape!r}; choose from {sorted(QWEN3_SHAPES)}")
    return Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE,
        max_position_embeddings=max_position_embeddings,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=shape in ("tiny", "0.6b", "4b"),
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        **QWEN3_SHAPES[shape],
    )


def build_embedder(
    shape: str = "tiny",
    *,
    tokenizer_dir: str | Path | None = None,
    attention: Literal["bidirectional", "causal"] = "bidirectional",
    max_length: int = 512,
    seed: int = 0,
) -> Embedder:
    """A randomly initialised Qwen3 embedder with last-token pooling and the real tokenizer."""
    torch.manual_seed(seed)
    backbone = AutoModel.from_config(qwen3_config(shape))
    settings = EmbedderSettings(
        pooling="last_token", attention=attention, max_length=max_length, default_instruction=DEFAULT_RETRIEVAL_INSTRUCTION
    )
    return Embedder.from_backbone(backbone, load_tokenizer(tokenizer_dir or qwen3_tokenizer_dir()), settings)


def build_causal_lm(shape: str = "tiny", *, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised Qwen3 causal LM: the reranker's backbone and the offline synthesis LLM."""
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(qwen3_config(shape))


def build_reranker(shape: str = "tiny", *, tokenizer_dir: str | Path | None = None, max_length: int = 1024, seed: int = 0) -> YesNoReranker:
    """A randomly initialised Qwen3 yes/no reranker with the real tokenizer."""
    model = build_causal_lm(shape, seed=seed)
    return YesNoReranker(model, load_tokenizer(tokenizer_dir or qwen3_tokenizer_dir()), RerankerSettings(max_length=max_length))
