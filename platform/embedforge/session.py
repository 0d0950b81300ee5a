"""Joining or starting Ray, the same way for every stage and job.

Inside ``ray job submit`` (``RAY_ADDRESS`` set) the job joins its cluster; from a shell or a
test it starts a local Ray. Ray Train reports block about 2 s each in Ray 2.60 while the
controller polls workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` seconds; lowering it to
0.1 s keeps short CPU runs from spending most of their time waiting on reports.
"""

from __future__ import annotations

import logging
import os

HEALTH_CHECK_INTERVAL_S = "0.1"
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_worker_logs() -> None:
    """Ray worker setup hook for the local Ray that :func:`ensure_ray` starts.

    A local Ray here runs without the dashboard, so Ray Train's placement-group cleaner
    cannot reach the State API and warns "Failed to query Ray Train Controller actor state"
    every second of every training run. The cleaner only matters when a driver dies on a
    shared cluster; locally the warning is noise that buries the progress output.
    """
    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)


def ensure_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a local Ray; once per process.

    ``num_cpus`` sizes a local Ray only; over-provisioning small machines (4 logical CPUs on
    2 cores) lets fractional actors, training workers and Ray Data reads run side by side.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    env_vars = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]}
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env: dict = {"env_vars": env_vars}
    if address:
        where = {"address": address}
    else:
        where = {"num_cpus": num_cpus, "include_dashboard": False}
        runtime_env["worker_process_setup_hook"] = f"{__name__}.quiet_worker_logs"
    ray.init(runtime_env=runtime_env, configure_logging=False, **where)


def use_assigned_cpus() -> int:
    """Set torch's thread count to the whole CPUs Ray assigned to this actor (at least one).

    Fractional actors get one thread, so several can share a core without oversubscribing
    it; a 2-CPU teacher uses both. Outside a Ray actor (a driver that loads a teacher itself)
    the count is one.
    """
    import ray
    import torch

    in_actor = ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0) if in_actor else 1.0
    threads = max(1, int(cpus))
    torch.set_num_threads(threads)
    return threads
