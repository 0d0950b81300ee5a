"""Joining a Ray cluster (or starting a local one sized for fractional actors), and moving
rows in and out of Ray Data for the sharded stages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from embedforge.config import ConfigModel


class RayConfig(ConfigModel):
    """How a stage finds Ray. Under ``ray job submit`` the job joins the cluster it runs on."""

    address: str | None = None
    """A cluster address; ``None`` joins ``$RAY_ADDRESS`` if set, else starts a local Ray."""
    num_cpus: int | None = 4
    """Logical CPUs of a locally started Ray (ignored when joining a cluster). Over-provisioned
    on purpose: fractional actors plus 0.25-CPU map tasks then never starve each other."""
    map_num_cpus: float = 0.25
    """CPUs reserved by each light row-mapping task (prompt rendering, parsing)."""
    rows_per_block: int = 8
    """Rows per input block. Small blocks let several actors share a small input and let
    results (and finished shards) stream back early; one block would feed one actor only."""


def from_rows(rows: list[dict], config: RayConfig):
    """A Ray Dataset over in-memory rows, split into blocks of ``rows_per_block``."""
    import ray

    return ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // config.rows_per_block)))


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


def ensure_ray(config: RayConfig) -> None:
    """Connect once per process; a test or a caller that already initialised Ray is respected."""
    from embedforge import session

    session.ensure_ray(config.num_cpus, config.address)
