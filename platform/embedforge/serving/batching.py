"""Token-budget batching: what a batch costs, and how rows are padded back together.

Requests reach a model replica as single tokenized rows. ``@serve.batch`` gathers rows
while :func:`batch_cost` stays within the budget, so a batch never holds more than
``max_batch_tokens`` padded tokens nor more than ``max_batch_size`` rows; the replica then
sorts the rows by length before padding (:func:`length_order`) so long and short rows
share as little padding as possible.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass(frozen=True)
class TokenRow:
    """One tokenized text (or query-document pair), unpadded.

    ``slot`` is the least a row costs, ``max_batch_tokens // max_batch_size``, so that the
    token budget alone also caps the row count.
    """

    input_ids: list[int]
    slot: int = 1
    extra: dict[str, list[int]] = field(default_factory=dict)
    """Other per-token inputs such as ``token_type_ids`` (cross-encoders)."""

    def __len__(self) -> int:
        return len(self.input_ids)


def batch_cost(rows: Sequence[TokenRow]) -> int:
    """Padded tokens of a batch: ``rows x max(longest row, slot)``."""
    if not rows:
        return 0
    return len(rows) * max(max(len(row) for row in rows), max(row.slot for row in rows))


def length_order(rows: Sequence[TokenRow]) -> list[int]:
    """Row indices, longest first (stable)."""
    return sorted(range(len(rows)), key=lambda index: -len(rows[index]))


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


def unpad(batch: dict[str, torch.Tensor], slot: int = 1) -> list[TokenRow]:
    """Split a padded tokenizer batch back into rows (left or right padding alike)."""
    rows = []
    mask = batch["attention_mask"].bool()
    for index in range(mask.shape[0]):
        keep = mask[index]
        extra = {key: value[index][keep].tolist() for key, value in batch.items() if key not in ("input_ids", "attention_mask")}
        rows.append(TokenRow(batch["input_ids"][index][keep].tolist(), slot, extra))
    return rows


def length_groups(rows: Sequence[TokenRow], ratio: float = 0.5) -> list[list[int]]:
    """Row indices sorted longest first, split where a row is shorter than ``ratio`` x its group's longest.

    Each group is one padded forward pass, so padding never exceeds about ``1 - ratio`` of
    a group's tokens; a batch of similar lengths stays one pass.
    """
    groups: list[list[int]] = []
    for index in length_order(rows):
        if groups and len(rows[index]) >= ratio * len(rows[groups[-1][0]]):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


class ForwardQueue:
    """Runs forward passes one at a time on one thread, merging the batches that wait meanwhile.

    ``@serve.batch`` forms the next batch as soon as the previous one is handed off, so while
    a forward pass runs, later rows would sit in many tiny batches. Here every batch that
    arrives while the model is busy joins the next pass, up to ``max_batch_tokens`` padded
    tokens (:func:`batch_cost`), so passes grow with the load.
    """

    def __init__(self, forward, max_batch_tokens: int):
        self.forward, self.max_batch_tokens = forward, max_batch_tokens
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self.waiting: list = []
        self.busy = False

    async def run(self, rows: list[TokenRow]) -> list:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((rows, future))
        if not self.busy:
            self.busy = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                taken = [self.waiting.pop(0)]
                while self.waiting and batch_cost([row for rows, _ in taken + self.waiting[:1] for row in rows]) <= self.max_batch_tokens:
                    taken.append(self.waiting.pop(0))
                rows = [row for batch, _ in taken for row in batch]
                try:
                    outputs = await loop.run_in_executor(self.pool, self.forward, rows)
                except Exception as error:  # noqa: BLE001 - handed to every caller of this pass
                    for _, future in taken:
                        future.set_exception(error)
                    continue
                start = 0
                for batch, future in taken:
                    future.set_result(outputs[start : start + len(batch)])
                    start += len(batch)
        finally:
            self.busy = False
