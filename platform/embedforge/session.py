"""The Ray session: joining a cluster or starting a local Ray, the same way for every stage.

Every command that needs Ray calls :func:`ensure_ray` with the :class:`RayConfig` of its
config (``ray:``); inside ``ray job submit`` (``RAY_ADDRESS`` set) the job joins its cluster,
from a shell or a test it starts a local Ray. Ray is started once per process: inside
``embedforge run`` the pipeline's top-level ``ray`` section starts it, and a stage section's
own ``ray`` settings cannot apply (:func:`settings_not_applied` finds them, to warn).

Ray Train reports block about 2 s each in Ray 2.60 while the controller polls workers every
``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` seconds; lowering it to 0.1 s keeps short CPU runs from
spending most of their time waiting on reports.
"""

from __future__ import annotations

import logging
import os

from pydantic import Field, model_validator

from embedforge.config import ConfigModel

HEALTH_CHECK_INTERVAL_S = "0.1"
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
RAY_DATA_FIELDS = ("map_num_cpus", "rows_per_block")
"""Former ``ray`` fields, now in the ``ray_data`` section of the synthesis stages."""


class RayConfig(ConfigModel):
    """How a command finds Ray. Under ``ray job submit`` the job joins the cluster it runs on."""

    address: str | None = None
    """A cluster address to join (``auto``, ``ray://host:10001``, ``host:6379``); ``None`` joins
    ``$RAY_ADDRESS`` if set, else starts a local Ray; ``local`` always starts a local Ray."""
    num_cpus: int | None = Field(None, ge=1)
    """Logical CPUs of a locally started Ray (ignored when joining a cluster); ``None`` is the
    machine's CPU count. Over-provisioning small machines (4 on 2 cores) lets fractional
    actors, training workers and Ray Data tasks run side by side."""
    log_to_driver: bool = True
    """Print the output of Ray's workers in this process (tests turn it off to stay quiet)."""

    @model_validator(mode="before")
    @classmethod
    def _no_ray_data_fields(cls, values: object) -> object:
        moved = [name for name in RAY_DATA_FIELDS if isinstance(values, dict) and name in values]
        if moved:
            raise ValueError(f"{', '.join(moved)} moved from the ray section to ray_data (ray_data: {{{moved[0]}: ...}})")
        return values


def quiet_worker_logs() -> None:
    """Ray worker setup hook for the local Ray that :func:`ensure_ray` starts.

    A local Ray here runs without the dashboard, so Ray Train's placement-group cleaner
    cannot reach the State API and warns "Failed to query Ray Train Controller actor state"
    every second of every training run. The cleaner only matters when a driver dies on a
    shared cluster; locally the warning is noise that buries the progress output.
    """
    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)


def ray_init_options(config: RayConfig) -> dict:
    """The keyword arguments :func:`ensure_ray` gives ``ray.init`` for ``config``.

    Joining (``config.address`` or ``$RAY_ADDRESS``) passes the address only; a local Ray gets
    ``num_cpus``, no dashboard, and :func:`quiet_worker_logs` in every worker.
    """
    env_vars = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)}
    options: dict = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": config.log_to_driver, "configure_logging": False}
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        return {**options, "address": address}
    options["runtime_env"]["worker_process_setup_hook"] = f"{__name__}.quiet_worker_logs"
    local = {"address": "local"} if address == "local" else {}
    return {**options, **local, "num_cpus": config.num_cpus, "include_dashboard": False}


def ensure_ray(config: RayConfig) -> None:
    """Join a cluster or start a local Ray as ``config`` says; once per process.

    A Ray already started in this process (by the pipeline, a test, or a caller) is used as
    it is, whatever ``config`` says.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    ray.init(**ray_init_options(config))


def settings_not_applied(wanted: RayConfig, started: RayConfig) -> list[str]:
    """The fields a config set explicitly in ``wanted`` that differ from the session ``started`` with.

    Only fields given in the YAML count (pydantic's ``model_fields_set``): defaults never differ
    on purpose.
    """
    return [name for name in type(wanted).model_fields if name in wanted.model_fields_set and getattr(wanted, name) != getattr(started, name)]


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
