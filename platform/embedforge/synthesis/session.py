"""Joining a Ray cluster, or starting a local one sized for fractional actors."""

from __future__ import annotations

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


def ensure_ray(config: RayConfig) -> None:
    """Connect once per process; a test or a caller that already initialised Ray is respected."""
    from embedforge import session

    session.ensure_ray(config.num_cpus, config.address)
