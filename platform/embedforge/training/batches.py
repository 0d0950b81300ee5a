"""Tokenisation for Ray Data, and the batch-side helpers the trainer needs.

Tokenisation runs in Ray Data (``map_batches`` with the callable classes here), never on
the trainer. Every text is padded to a fixed length, so each column is a fixed-shape
tensor and every rank receives batches of the same shape; the trainer then trims the
columns that are padding in the whole batch (:func:`trim_padding`) so it does not pay for
them. The pure functions take a tokenizer and plain lists and are tested without Ray.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from embedforge.models.reranker import build_judge_inputs
from embedforge.prompts import END_OF_TEXT, format_query


def text_id(text: str) -> int:
    """A signed 64-bit hash of a text, so the loss can tell copies of the positive apart."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def embedding_tokenizer(model_dir: str | Path):
    """The tokenizer and settings an :class:`Embedder` loaded from ``model_dir`` would use."""
    from embedforge.models.embedder import read_settings
    from embedforge.tokenization import append_end_token, load_tokenizer

    settings = read_settings(Path(model_dir))
    tokenizer = load_tokenizer(model_dir)
    if settings.pooling == "last_token":
        vocab = tokenizer.get_vocab()
        tokenizer = append_end_token(tokenizer, END_OF_TEXT if END_OF_TEXT in vocab else tokenizer.eos_token)
        tokenizer.padding_side = "left"
    return tokenizer, settings


def _fixed(tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    encoded = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)


def tokenize_pairs(
    tokenizer,
    queries: Sequence[str],
    instructions: Sequence[str | None],
    positives: Sequence[str],
    negatives: Sequence[Sequence[str]],
    *,
    query_template: str,
    default_instruction: str | None,
    query_max_length: int,
    max_length: int,
    symmetric: Sequence[bool] | None = None,
) -> dict[str, np.ndarray]:
    """Fixed-shape token columns of an embedder batch of B rows with K negatives each.

    Queries get their row's instruction (else ``default_instruction``); rows flagged
    ``symmetric`` (STS, bitext) get it on the positive and negatives too.

    Returns ``query_*`` (B, Lq), ``positive_*`` (B, L), ``negative_*`` (B, K, L) ids and
    masks, and text hashes: ``query_ids`` (B,) of the formatted queries, so rows of one
    query can be told apart from other queries, ``positive_ids`` (B,) and ``negative_ids``
    (B, K).
    """
    b = len(queries)
    k = len(negatives[0]) if b else 0
    if any(len(row) != k for row in negatives):
        raise ValueError("every row of a batch needs the same number of negatives")
    row_instructions = [i if i is not None else default_instruction for i in instructions]
    symmetric = symmetric if symmetric is not None else [False] * b
    side = [i if sym else None for i, sym in zip(row_instructions, symmetric)]
    prepared = [format_query(q, i, query_template) for q, i in zip(queries, row_instructions)]
    positives = [format_query(p, i, query_template) for p, i in zip(positives, side)]
    negatives = [[format_query(n, i, query_template) for n in row] for row, i in zip(negatives, side)]
    out: dict[str, np.ndarray] = {}
    out["query_input_ids"], out["query_attention_mask"] = _fixed(tokenizer, prepared, query_max_length)
    out["query_ids"] = np.array([text_id(t) for t in prepared], dtype=np.int64)
    out["positive_input_ids"], out["positive_attention_mask"] = _fixed(tokenizer, positives, max_length)
    out["positive_ids"] = np.array([text_id(t) for t in positives], dtype=np.int64)
    if k:
        flat = [text for row in negatives for text in row]
        ids, mask = _fixed(tokenizer, flat, max_length)
        out["negative_input_ids"] = ids.reshape(b, k, -1)
        out["negative_attention_mask"] = mask.reshape(b, k, -1)
        out["negative_ids"] = np.array([text_id(t) for t in flat], dtype=np.int64).reshape(b, k)
    return out


def tokenize_judge_groups(
    tokenizer,
    queries: Sequence[str],
    instructions: Sequence[str | None],
    positives: Sequence[str],
    negatives: Sequence[Sequence[str]],
    *,
    default_instruction: str,
    max_length: int,
) -> dict[str, np.ndarray]:
    """Reranker prompts for each row's positive then its negatives: ``input_ids`` (B, 1 + K, L), left padded."""
    groups_ids, groups_mask = [], []
    for query, instruction, positive, row_negatives in zip(queries, instructions, positives, negatives):
        documents = [positive, *row_negatives]
        encoded = build_judge_inputs(tokenizer, query, documents, instruction or default_instruction, max_length)
        ids, mask = encoded["input_ids"].numpy(), encoded["attention_mask"].numpy()
        pad = max_length - ids.shape[1]
        groups_ids.append(np.pad(ids, ((0, 0), (pad, 0)), constant_values=tokenizer.pad_token_id))
        groups_mask.append(np.pad(mask, ((0, 0), (pad, 0))))
    return {"input_ids": np.stack(groups_ids).astype(np.int64), "attention_mask": np.stack(groups_mask).astype(np.int64)}


def tokenize_pair_groups(
    tokenizer,
    queries: Sequence[str],
    positives: Sequence[str],
    negatives: Sequence[Sequence[str]],
    *,
    max_length: int,
) -> dict[str, np.ndarray]:
    """Cross-encoder ``(query, document)`` pairs, each row's positive then its negatives: (B, 1 + K, L).

    The same inputs :class:`embedforge.models.reranker.CrossEncoderReranker` builds to score
    (bare query, only the document truncated, ``token_type_ids`` when the tokenizer makes
    them), padded to ``max_length`` on the tokenizer's side.
    """
    b = len(queries)
    k = len(negatives[0]) if b else 0
    if any(len(row) != k for row in negatives):
        raise ValueError("every row of a batch needs the same number of negatives")
    flat_queries = [query for query in queries for _ in range(1 + k)]
    flat_documents = [document for positive, row in zip(positives, negatives) for document in (positive, *row)]
    encoded = tokenizer(
        flat_queries, flat_documents, padding="max_length", truncation="only_second", max_length=max_length, return_tensors="np"
    )
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded]
    return {name: encoded[name].astype(np.int64).reshape(b, 1 + k, -1) for name in names}


def _column(batch: dict[str, Any], name: str) -> list:
    return [value if not isinstance(value, np.ndarray) else value.tolist() for value in batch[name]]


class TokenizeEmbedderPairs:
    """Ray Data stage: rows of pairs to fixed-shape token columns for the embedder."""

    def __init__(self, model_dir: str, query_max_length: int, max_length: int):
        self.tokenizer, self.settings = embedding_tokenizer(model_dir)
        self.query_max_length = query_max_length
        self.max_length = max_length

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        return tokenize_pairs(
            self.tokenizer,
            _column(batch, "query"),
            _column(batch, "instruction"),
            _column(batch, "positive"),
            _column(batch, "negatives"),
            query_template=self.settings.query_template,
            default_instruction=self.settings.default_instruction,
            query_max_length=self.query_max_length,
            max_length=self.max_length,
            symmetric=[bool(flag) for flag in batch["symmetric"]] if "symmetric" in batch else None,
        )


class TokenizeJudgeGroups:
    """Ray Data stage: rows of pairs to Qwen3 reranker prompts, positive first."""

    def __init__(self, model_dir: str, max_length: int):
        from embedforge.models.reranker import reranker_settings
        from embedforge.tokenization import load_tokenizer

        self.tokenizer = load_tokenizer(model_dir)
        self.settings = reranker_settings(model_dir, new_head=True)
        self.max_length = max_length

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        return tokenize_judge_groups(
            self.tokenizer,
            _column(batch, "query"),
            _column(batch, "instruction"),
            _column(batch, "positive"),
            _column(batch, "negatives"),
            default_instruction=self.settings.default_instruction,
            max_length=self.max_length,
        )


class TokenizePairGroups:
    """Ray Data stage: rows of pairs to cross-encoder text pairs, positive first (row instructions unused).

    With ``prior_dir`` (a saved :class:`embedforge.models.prior.FirstStagePrior`) it adds the
    prior logits of every group as a ``prior`` column ``(B, 1 + K)``, which the reranker's
    loss adds to the cross-encoder's logits.
    """

    def __init__(self, model_dir: str, max_length: int, prior_dir: str | None = None):
        from embedforge.models.prior import FirstStagePrior
        from embedforge.tokenization import load_tokenizer

        self.tokenizer = load_tokenizer(model_dir)
        self.max_length = max_length
        self.prior = FirstStagePrior.load(prior_dir, device="cpu") if prior_dir else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        queries, positives, negatives = _column(batch, "query"), _column(batch, "positive"), _column(batch, "negatives")
        columns = tokenize_pair_groups(self.tokenizer, queries, positives, negatives, max_length=self.max_length)
        if self.prior is not None:
            columns["prior"] = np.stack(self.prior.group_scores(queries, [[p, *n] for p, n in zip(positives, negatives)]))
        return columns


def used_span(attention_mask: torch.Tensor) -> slice:
    """The columns of ``(..., L)`` rows that hold a real token in some row (left or right padding)."""
    used = attention_mask.reshape(-1, attention_mask.shape[-1]).any(dim=0).nonzero().flatten()
    if used.numel() == 0:
        return slice(None)
    return slice(int(used[0]), int(used[-1]) + 1)


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the columns that are padding in every row (left or right padding), ``(..., L) -> (..., L')``."""
    span = used_span(attention_mask)
    return input_ids[..., span], attention_mask[..., span]


def dataset_schedule(names: Sequence[str], weights: Sequence[float], steps: int, seed: int) -> list[str]:
    """Which dataset each step's batch comes from (the same list on every rank)."""
    probabilities = np.asarray(weights, dtype=np.float64)
    probabilities = probabilities / probabilities.sum()
    picks = np.random.default_rng(seed).choice(len(names), size=steps, p=probabilities)
    return [names[int(i)] for i in picks]
