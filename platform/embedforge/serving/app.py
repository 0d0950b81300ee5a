"""Composing the applications, and running them on a local Ray.

Two Serve applications, one per model, each its own HTTP ingress: ``embedforge`` (the
embedder, route ``/``) and, when a reranker is configured, ``embedforge-reranker`` (route
``/v1/rerank``). Serve configs import ``build_app(args)`` and ``build_reranker_app(args)``
with the same ``args``; ``start_local``/``stop_local`` and ``deploy_config`` are what
``embedforge serve`` and the tests call.

Serve's throughput-optimised mode (:data:`FAST_PATH_ENV`: HAProxy in front, requests going
straight to the ingress replicas) must be in the environment before Ray starts;
:func:`use_fast_path` sets it for a local Ray, and the KubeRay manifests set it on every pod.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from embedforge.config import ConfigError, parse_config
from embedforge.serving.settings import APP, RERANKER_APP, ServeSettings, served_names

FAST_PATH_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
"""Measured here without a model: about 30 CPU-ms per request on Serve's default path, about 2 with these."""


LOCAL_DRAIN_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
"""A stopping replica waits this long for HAProxy to stop routing to it. Ray's default of 30 s
suits a multi-node cluster; on one machine HAProxy reloads at once, and 30 s made every stop
(and every downscale) of a local server last 30 s."""


def use_fast_path() -> None:
    """Set :data:`FAST_PATH_ENV` and :data:`LOCAL_DRAIN_ENV` (unless set) for the local Ray this process is about to start.

    Call it before importing ``ray.serve``: Serve reads these when its modules load.
    """
    for key, value in {**FAST_PATH_ENV, **LOCAL_DRAIN_ENV}.items():
        os.environ.setdefault(key, value)


MAX_DEFAULT_REPLICAS = 8


def default_replicas() -> int:
    """Replicas per model for ``embedforge serve``: one per core on a CPU machine (at most
    :data:`MAX_DEFAULT_REPLICAS`, each a copy of the model in memory), one with a GPU.

    Measured on 2 cores (docs/benchmarks.md): two one-thread replicas served 1.3x what one
    two-thread replica did at concurrency 32; small forward passes do not split well across threads.
    """
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(os.cpu_count() or 1, MAX_DEFAULT_REPLICAS))


def _parse(args: dict[str, Any] | ServeSettings) -> ServeSettings:
    return args if isinstance(args, ServeSettings) else parse_config(dict(args), ServeSettings, "build_app args")


def _limits(settings: ServeSettings):
    from embedforge.serving.api import Limits
    from embedforge.serving.keys import load_key_digests

    return Limits(settings.max_inputs, settings.max_body_bytes, load_key_digests(settings.api_key_env, settings.api_key_file))


def build_app(args):
    """The ``embedforge`` application: the embedder and the routes every deployment has.

    ``args`` are :class:`~embedforge.serving.settings.ServeSettings` fields (a Serve config's
    ``args:`` mapping). Model references resolve here, so a missing folder fails the deploy
    with its path; API keys are read here and only their digests reach the replicas.
    """
    return embedder_app(_parse(args))


def build_reranker_app(args):
    """The ``embedforge-reranker`` application (route ``/v1/rerank``), from the same ``args``."""
    return reranker_app(_parse(args))


def embedder_app(settings: ServeSettings, replicas: int | None = None):
    """:func:`build_app` from parsed settings; ``replicas`` fixes the replica count (Serve configs set their own)."""
    from embedforge.models.registry import resolve_model
    from embedforge.serving.deployments import EmbedderServer

    embedder_path = str(resolve_model(settings.embedder))
    reranker_names = served_names(settings.reranker, resolve_model(settings.reranker), settings.reranker_name) if settings.reranker else None
    names = served_names(settings.embedder, embedder_path, settings.embedder_name)
    deployment = EmbedderServer.options(num_replicas=replicas) if replicas else EmbedderServer
    return deployment.bind(embedder_path, names, _limits(settings), settings.embedder_batching.model_dump(), settings.over_length, reranker_names)


def reranker_app(settings: ServeSettings, replicas: int | None = None):
    """:func:`build_reranker_app` from parsed settings."""
    from embedforge.models.registry import resolve_model
    from embedforge.serving.deployments import RerankerServer

    if not settings.reranker:
        raise ValueError("build_reranker_app args: 'reranker' is not set")
    path = str(resolve_model(settings.reranker))
    deployment = RerankerServer.options(num_replicas=replicas) if replicas else RerankerServer
    return deployment.bind(path, served_names(settings.reranker, path, settings.reranker_name), _limits(settings), settings.reranker_batching.model_dump())


def start_local(settings: ServeSettings | dict[str, Any], *, host: str = "127.0.0.1", port: int = 8000, replicas: int | None = None) -> str:
    """Start Serve's HTTP proxy on ``host:port``, deploy the applications, wait until healthy; returns the URL."""
    from ray import serve

    settings = _parse(settings)
    serve.start(http_options={"host": host, "port": port})
    if settings.reranker:
        serve.run(reranker_app(settings, replicas), name=RERANKER_APP, route_prefix="/v1/rerank", blocking=False)
    serve.run(embedder_app(settings, replicas), name=APP, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def deploy_config(config: str | Path | dict[str, Any], timeout_s: float = 600) -> dict[str, str]:
    """Deploy a Serve config file (the same YAML ``serve run`` / ``serve deploy`` take) and wait.

    Returns each application's URL prefix. The HTTP host and port come from the config's
    ``http_options``.
    """
    from ray import serve
    from ray.serve._private import api as serve_private_api
    from ray.serve.schema import ServeDeploySchema

    source = str(config) if not isinstance(config, dict) else "<serve config>"
    data = config if isinstance(config, dict) else yaml.safe_load(Path(config).read_text())
    try:
        schema = ServeDeploySchema.model_validate(data)
    except Exception as error:  # pydantic's ValidationError, from Ray's own pydantic models
        raise ConfigError(f"{source}: not a valid Serve config: {error}") from None
    client = serve_private_api.serve_start(http_options=schema.http_options.model_dump())
    client.deploy_apps(schema, _blocking=False)
    names = [app.name for app in schema.applications]
    deadline = time.monotonic() + timeout_s
    while not all(serve.status().applications.get(name) is not None and serve.status().applications[name].status == "RUNNING" for name in names):
        statuses = {name: getattr(serve.status().applications.get(name), "status", "NOT_STARTED") for name in names}
        if any(status == "DEPLOY_FAILED" for status in statuses.values()) or time.monotonic() > deadline:
            raise RuntimeError(f"{source}: applications did not reach RUNNING: {statuses}")
        time.sleep(1)
    host, port = schema.http_options.host, schema.http_options.port
    return {app.name: f"http://{host}:{port}{(app.route_prefix or '').rstrip('/')}" for app in schema.applications}


def stop_local(timeout_s: float = 120) -> None:
    """Delete every application and stop Serve's controller and proxies; waits until the controller is gone.

    ``serve.shutdown`` itself returns after 30 s even when replicas are still draining (seen
    with the HAProxy fast path), which would leave the next ``serve.start`` a half-stopped
    controller.
    """
    import ray
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    serve.shutdown()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.5)
    raise RuntimeError(f"Serve's controller was still running {timeout_s:.0f} s after shutdown")
