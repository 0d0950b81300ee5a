"""The resumable-shard skeleton of the sharded stages (``synthesize``, ``mine``, ``weak``).

A stage plans its items in shards, checks the plan against the folder's ``manifest.json``
(:func:`check_plan`, which ``filter`` uses too), and hands the shards to :func:`write_shards`:
shards a previous run finished are skipped, the stage's own function turns the pending ones
into rows, each shard is written atomically as soon as it is complete, and the counts of every
finished shard come back for the stage's stats (:func:`total_counts`). What a shard's items
become stays in the stage's module.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

from embedforge.config import ConfigModel
from embedforge.synthesis.shards import check_manifest, config_identity, done_shards, plan_fingerprint, shard_counts, write_shard


class Shard(NamedTuple):
    """One finished shard, ready to write."""

    index: int
    pairs: Sequence[dict]
    """Pair rows (``PAIR_SCHEMA`` columns)."""
    rejected: Sequence[dict]
    """Rejection rows (``REJECT_SCHEMA`` columns)."""
    counts: dict
    """The shard's counts, kept in ``done/`` and summed by :func:`total_counts`."""


ShardMaker = Callable[[dict[int, Sequence]], Iterable[Shard]]
"""A stage's work: the pending shards' items ``{index: items}`` to finished shards, in any order."""


def check_plan(output_dir: Path, stage: str, config: ConfigModel, plan: list, **sizes: int) -> None:
    """Fingerprint the stage's plan (the config's output-deciding fields plus ``plan``, what
    identifies the input) and refuse a folder that holds a different one; ``sizes`` are recorded."""
    fingerprint = plan_fingerprint([config_identity(config), plan])
    check_manifest(output_dir, {"stage": stage, "fingerprint": fingerprint, **sizes})


def write_shards(output_dir: Path, shards: Sequence[Sequence], make: ShardMaker, label: str) -> list[dict]:
    """Write every shard of ``shards`` that ``output_dir`` does not hold yet; returns the counts
    of all finished shards, in shard order.

    ``make`` is called once, with all the pending shards, and only when there are some (it
    joins Ray if its work needs it). ``label`` starts the progress line (``"synthesize: 12 records"``).
    """
    finished = done_shards(output_dir)
    pending = {index: shard for index, shard in enumerate(shards) if index not in finished}
    print(f"{label} in {len(shards)} shards; {len(finished)} already done, {len(pending)} to run")
    if pending:
        for shard in make(pending):
            write_shard(Path(output_dir), shard.index, shard.pairs, shard.rejected, shard.counts)
    return shard_counts(output_dir)


def total_counts(counts: Iterable[dict]) -> Counter:
    """The sum of shards' counts: numbers add up, and nested counts (per reason, per kind) merge
    and add up. Keys keep the order they first appear in; a missing number reads as 0."""
    total: Counter = Counter()
    for shard in counts:
        for key, value in shard.items():
            total[key] = total_counts([total.get(key, {}), value]) if isinstance(value, dict) else total[key] + value
    return total
