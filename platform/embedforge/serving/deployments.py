"""The model deployments: an embedder and a reranker replica with token-budget batching.

Each request is tokenized in the request path, on a tokenizer thread (one: a fast tokenizer
is not safe to call from two threads at once), so tokenizing the next requests overlaps the
forward pass of the current batch instead of queueing behind it. Tokenized rows then go one by one through ``@serve.batch``, whose ``batch_size_fn``
(:func:`~embedforge.serving.batching.batch_cost`) caps the padded tokens of a batch and,
through each row's ``slot``, its row count. The forward pass runs on its own thread
(:class:`~embedforge.serving.batching.ForwardQueue`), so the replica's event loop keeps
accepting and tokenizing requests meanwhile, and batches that wait for the model are
merged into its next pass within the same token budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from ray import serve

from embedforge.serving.batching import ForwardQueue, TokenRow, batch_cost, length_groups, pad_rows, unpad
from embedforge.serving.settings import BatchSettings

# @serve.batch reads its limits at decoration time; each replica resets them from its
# settings in __init__. The token budget *is* the batch size that batch_cost measures.
_DEFAULT_BUDGET = BatchSettings().max_batch_tokens


class InputError(ValueError):
    """A client mistake found by a model replica (e.g. a text over the length limit); the ingress answers 400."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def __reduce__(self):
        return (InputError, (str(self), self.param))


def count_batch(stats: Counter, batch: dict[str, torch.Tensor]) -> None:
    stats["batches"] += 1
    stats["rows"] += batch["input_ids"].shape[0]
    stats["padded_tokens"] += batch["input_ids"].numel()
    stats["real_tokens"] += int(batch["attention_mask"].sum())


def configure_batching(handler: Any, settings: BatchSettings, max_length: int) -> int:
    """Apply a replica's batch settings to its ``@serve.batch`` method; returns the row slot."""
    if settings.max_batch_tokens < max_length:
        raise ValueError(f"max_batch_tokens={settings.max_batch_tokens} is below the model's max_length={max_length}")
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    handler.set_max_batch_size(settings.max_batch_tokens)
    handler.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
    return settings.max_batch_tokens // settings.max_batch_size


@serve.deployment(
    name="Embedder",
    max_ongoing_requests=128,
    max_queued_requests=1024,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
)
class EmbedderDeployment:
    """One embedder replica: ``embed(texts, query, instruction) -> (vectors (N, H) float32, tokens)``."""

    def __init__(self, model: str, batching: dict | None = None, over_length: str = "truncate"):
        from embedforge.models.embedder import Embedder

        settings = BatchSettings.model_validate(batching or {})
        self.embedder = Embedder.load(model, device=settings.device)
        self.tokenizer = self.embedder.tokenizer
        self.max_length = self.embedder.settings.max_length
        self.over_length = over_length
        self.slot = configure_batching(self.embed_rows, settings, self.max_length)
        self.tokenize_pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        self.forward_queue = ForwardQueue(self._forward, settings.max_batch_tokens)
        self.stats: Counter = Counter()
        self._forward([TokenRow(self.tokenizer("warm up")["input_ids"])])
        self.stats.clear()

    def batch_stats(self) -> dict:
        """Totals since start: batches, rows, real and padded tokens, seconds in forward and tokenize."""
        return dict(self.stats)

    def info(self) -> dict:
        return {
            "kind": "embedder",
            "dimensions": self.embedder.hidden_size,
            "max_length": self.max_length,
            "matryoshka_dimensions": self.embedder.settings.matryoshka_dimensions,
        }

    async def embed(self, texts: list[str], query: bool = False, instruction: str | None = None) -> tuple[np.ndarray, int]:
        prepared = self.embedder.prepare_texts(texts, query=query, instruction=instruction)
        rows = await asyncio.get_running_loop().run_in_executor(self.tokenize_pool, self._tokenize, prepared)
        vectors = await asyncio.gather(*(self.embed_rows(row) for row in rows))
        return np.stack(vectors), sum(len(row) for row in rows)

    def _tokenize(self, texts: list[str]) -> list[TokenRow]:
        start = time.perf_counter()
        try:
            return self._tokenize_rows(texts)
        finally:
            self.stats["tokenize_s"] += time.perf_counter() - start

    def _tokenize_rows(self, texts: list[str]) -> list[TokenRow]:
        # One token of headroom tells an over-long text apart from one of exactly max_length.
        limit = self.max_length + (1 if self.over_length == "reject" else 0)
        ids = self.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        for index, row in enumerate(ids):
            if len(row) > self.max_length:
                raise InputError(f"input[{index}] is longer than the model's limit of {self.max_length} tokens", "input")
        return [TokenRow(row, self.slot) for row in ids]

    @serve.batch(max_batch_size=_DEFAULT_BUDGET, batch_wait_timeout_s=0.005, batch_size_fn=batch_cost)
    async def embed_rows(self, rows: list[TokenRow]) -> list[np.ndarray]:
        return await self.forward_queue.run(rows)

    @torch.inference_mode()
    def _forward(self, rows: list[TokenRow]) -> list[np.ndarray]:
        start = time.perf_counter()
        output: list[np.ndarray] = [None] * len(rows)  # type: ignore[list-item]
        for group in length_groups(rows):
            batch = pad_rows([rows[i] for i in group], self.tokenizer.pad_token_id, self.tokenizer.padding_side)
            count_batch(self.stats, batch)
            device = self.embedder.device
            vectors = self.embedder(batch["input_ids"].to(device), batch["attention_mask"].to(device))  # (B, H)
            for index, vector in zip(group, vectors.float().cpu().numpy()):
                output[index] = vector
        self.stats["forward_s"] += time.perf_counter() - start
        return output


@serve.deployment(
    name="Reranker",
    max_ongoing_requests=64,
    max_queued_requests=512,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
)
class RerankerDeployment:
    """One reranker replica: ``rerank(query, documents, instruction) -> (probabilities (N,), tokens)``."""

    def __init__(self, model: str, batching: dict | None = None):
        from embedforge.models.reranker import load_reranker

        settings = BatchSettings.model_validate(batching or {"max_batch_size": 32})
        self.reranker = load_reranker(model, device=settings.device)
        self.tokenizer = self.reranker.tokenizer
        self.max_length = self.reranker.settings.max_length
        self.padding_side = "left" if self.reranker.settings.prompt_format == "qwen3" else self.tokenizer.padding_side
        self.slot = configure_batching(self.score_rows, settings, self.max_length)
        self.tokenize_pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        self.forward_queue = ForwardQueue(self._forward, settings.max_batch_tokens)
        self._forward(self._tokenize("warm up", ["warm up"], None))

    def info(self) -> dict:
        return {"kind": "reranker", "max_length": self.max_length}

    async def rerank(self, query: str, documents: list[str], instruction: str | None = None) -> tuple[np.ndarray, int]:
        rows = await asyncio.get_running_loop().run_in_executor(self.tokenize_pool, self._tokenize, query, documents, instruction)
        scores = await asyncio.gather(*(self.score_rows(row) for row in rows))
        return np.asarray(scores, dtype=np.float32), sum(len(row) for row in rows)

    def _tokenize(self, query: str, documents: list[str], instruction: str | None) -> list[TokenRow]:
        try:
            batch = self.reranker.build_inputs(query, documents, instruction)
        except ValueError as error:  # the query and instruction alone overflow max_length
            raise InputError(str(error), "query") from None
        return unpad(batch, self.slot)

    @serve.batch(max_batch_size=_DEFAULT_BUDGET, batch_wait_timeout_s=0.005, batch_size_fn=batch_cost)
    async def score_rows(self, rows: list[TokenRow]) -> list[float]:
        return await self.forward_queue.run(rows)

    @torch.inference_mode()
    def _forward(self, rows: list[TokenRow]) -> list[float]:
        output = [0.0] * len(rows)
        for group in length_groups(rows):
            batch = pad_rows([rows[i] for i in group], self.tokenizer.pad_token_id, self.padding_side)
            batch = {key: value.to(self.reranker.device) for key, value in batch.items()}
            scores = torch.sigmoid(self.reranker(**batch).double()).cpu().tolist()  # (B,), float64: no ties at 1.0
            for index, score in zip(group, scores):
                output[index] = score
        return output
