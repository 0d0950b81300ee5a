"""Continuous batching inside a model replica, and how its rows are cut into forward passes.

The replica's event loop only parses and checks a request, then hands its payload to
:class:`ContinuousBatcher` and awaits a future. One model thread takes everything that is
waiting (up to ``max_rows`` rows; a 32-text request stays one item), tokenises it in one
call, runs the forward passes and resolves the futures. No timer waits for a batch to
fill: under load the next take holds whatever arrived during the last pass, so passes grow
with the load, and a lone request on an idle server starts at once.

Inside a take, :func:`forward_groups` sorts rows longest first and cuts a new pass where
the padded cost would pass ``max_batch_tokens`` or a row is much shorter than its pass's
longest, so padding stays small.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class TokenRow:
    """One tokenized text (or query-document pair), unpadded."""

    input_ids: list[int]
    extra: dict[str, list[int]] = field(default_factory=dict)
    """Other per-token inputs such as ``token_type_ids`` (cross-encoders)."""

    def __len__(self) -> int:
        return len(self.input_ids)


def forward_groups(lengths: Sequence[int], max_tokens: int, ratio: float = 0.5) -> list[list[int]]:
    """Row indices, longest first, cut into forward passes.

    A pass costs ``rows x longest`` padded tokens and never more than ``max_tokens`` (a
    single row always fits: the settings guarantee ``max_tokens >= max_length``). A new
    pass also starts where a row is shorter than ``ratio`` x the pass's longest, so padding
    never exceeds about ``1 - ratio`` of a pass.
    """
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups:
            longest = lengths[groups[-1][0]]
            if lengths[index] >= ratio * longest and (len(groups[-1]) + 1) * longest <= max_tokens:
                groups[-1].append(index)
                continue
        groups.append([index])
    return groups


def pad_rows(rows: Sequence[TokenRow], pad_id: int, side: str) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and any extra inputs, each ``(B, L)``, padded on ``side``."""
    width = max(len(row) for row in rows)
    keys = ["input_ids", "attention_mask", *rows[0].extra]
    batch = {key: torch.full((len(rows), width), pad_id if key == "input_ids" else 0, dtype=torch.long) for key in keys}
    for index, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        batch["input_ids"][index, span] = torch.tensor(row.input_ids, dtype=torch.long)
        batch["attention_mask"][index, span] = 1
        for key, values in row.extra.items():
            batch[key][index, span] = torch.tensor(values, dtype=torch.long)
    return batch


def unpad(batch: dict[str, torch.Tensor]) -> list[TokenRow]:
    """Split a padded tokenizer batch back into rows (left or right padding alike)."""
    rows = []
    mask = batch["attention_mask"].bool()
    for index in range(mask.shape[0]):
        keep = mask[index]
        extra = {key: value[index][keep].tolist() for key, value in batch.items() if key not in ("input_ids", "attention_mask")}
        rows.append(TokenRow(batch["input_ids"][index][keep].tolist(), extra))
    return rows


@dataclass
class Pending:
    """A request waiting for the model thread."""

    payload: Any
    rows: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future, result: Any) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class ContinuousBatcher:
    """One model thread serving every queued request, a take at a time.

    ``process(payloads)`` runs on the model thread and returns one result per payload, or
    an exception for a payload that alone failed (a client mistake found while
    tokenising); an exception it raises fails every request of the take.
    """

    def __init__(self, process: Callable[[list[Any]], list[Any]], max_rows: int, name: str = "model"):
        self.process, self.max_rows = process, max_rows
        self.queue: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self.held: Pending | None = None
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    async def submit(self, payload: Any, rows: int) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.put(Pending(payload, rows, future, loop))
        return await future

    def take(self) -> list[Pending]:
        """Block for one request, then add every waiting one while the rows fit in ``max_rows``."""
        first, self.held = (self.held or self.queue.get()), None
        taken, rows = [first], first.rows
        while rows < self.max_rows:
            try:
                pending = self.queue.get_nowait()
            except queue.Empty:
                break
            if rows + pending.rows > self.max_rows:
                self.held = pending
                break
            taken.append(pending)
            rows += pending.rows
        return [pending for pending in taken if not pending.future.cancelled()]

    def _serve(self) -> None:
        while True:
            taken = self.take()
            if not taken:
                continue
            try:
                results = self.process([pending.payload for pending in taken])
            except Exception as error:  # noqa: BLE001 - handed to every request of the take
                results = [error] * len(taken)
            for pending, result in zip(taken, results):
                pending.loop.call_soon_threadsafe(_resolve, pending.future, result)
