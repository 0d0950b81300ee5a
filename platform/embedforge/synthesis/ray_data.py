"""Moving rows in and out of Ray Data for the sharded synthesis stages (synthesize, weak, filter).

:class:`RayDataConfig` holds the knobs of those stages' Ray Data steps (the ``ray_data:``
section); :func:`from_rows` splits in-memory rows into blocks, and :func:`completed_shards`
streams results back as whole shards, so a finished shard is written as soon as it is done.
How the stage finds Ray is the ``ray:`` section (:class:`embedforge.session.RayConfig`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from pydantic import Field

from embedforge.config import ConfigModel
from embedforge.session import RayConfig

SYNTHESIS_RAY = RayConfig(num_cpus=4)
"""The ``ray`` default of the synthesis stages: a local Ray over-provisioned to 4 logical CPUs
on purpose, so fractional actors plus 0.25-CPU map tasks never starve each other."""


class RayDataConfig(ConfigModel):
    """Sizes of a stage's light Ray Data steps; they change how fast a run goes, not what it writes."""

    map_num_cpus: float = Field(0.25, ge=0)
    """CPUs reserved by each light row-mapping task (prompt rendering, parsing, filter rules)."""
    rows_per_block: int = Field(8, ge=1)
    """Rows per block of an in-memory input (synthesize, weak; filter reads files in batches of
    ``batch_rows``). Small blocks let several actors share a small input and let results (and
    finished shards) stream back early; one block would feed one actor only."""


def from_rows(rows: list[dict], rows_per_block: int):
    """A Ray Dataset over in-memory rows, split into blocks of ``rows_per_block``."""
    import ray

    return ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // rows_per_block)))


def completed_shards(dataset, pending: Mapping[int, Sequence[dict]], key: str) -> Iterator[tuple[int, list[dict]]]:
    """Stream ``dataset`` and yield each pending shard, rows in planned order, once its last row is in.

    Output rows are matched to shards by ``key``. Blocks are read with no lookahead:
    ``iter_rows`` prefetches one block and holds a finished one back until the next arrives,
    so a job killed while the LLM works on that next block lost a shard it had finished.
    """
    from ray.data.block import BlockAccessor

    shard_of = {row[key]: index for index, shard in pending.items() for row in shard}
    position = {row[key]: n for shard in pending.values() for n, row in enumerate(shard)}
    received: dict[int, list[dict]] = {index: [] for index in pending}
    for batch in dataset.iter_batches(batch_size=None, batch_format=None, prefetch_batches=0):
        for row in BlockAccessor.for_block(BlockAccessor.batch_to_block(batch)).iter_rows(public_row_format=True):
            index = shard_of[row[key]]
            received[index].append(dict(row))
            if len(received[index]) == len(pending[index]):
                yield index, sorted(received.pop(index), key=lambda r: position[r[key]])
