"""Pooling of token states into one vector per sequence.

All functions take ``hidden (B, L, H)`` and ``attention_mask (B, L)`` and work for left and
right padding alike, so a wrong padding side can never silently move the pooled token.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

PoolingName = Literal["last_token", "mean", "cls"]


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The state at each sequence's last real token (the appended ``<|endoftext|>``)."""
    seq_len = attention_mask.shape[1]
    last_index = seq_len - 1 - attention_mask.flip(dims=[1]).argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index]  # (B, H)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the states of real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, H)


def cls_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The state at each sequence's first real token (``[CLS]`` for BERT-style encoders)."""
    first_index = attention_mask.argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first_index]  # (B, H)


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "last_token": last_token_pool,
    "mean": mean_pool,
    "cls": cls_pool,
}

SENTENCE_TRANSFORMERS_MODES = {"last_token": "pooling_mode_lasttoken", "mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
