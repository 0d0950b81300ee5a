"""Composing the application, and running it on a local Ray.

``build_app(args)`` is the import path Serve configs name
(``import_path: embedforge.serving.app:build_app``); ``start_local``/``stop_local`` and
``deploy_config`` are what ``embedforge serve`` and the tests call.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from ray import serve
from ray.serve import Application

from embedforge.config import ConfigError, parse_config
from embedforge.models.registry import resolve_model
from embedforge.serving.api import Ingress, Limits
from embedforge.serving.deployments import EmbedderDeployment, RerankerDeployment
from embedforge.serving.keys import load_key_digests
from embedforge.serving.settings import ServeSettings, served_names

APP_NAME = "embedforge"


def build_app(args: dict[str, Any] | ServeSettings) -> Application:
    """The Serve application: ``Ingress`` over ``Embedder`` and, when given, ``Reranker``.

    ``args`` are :class:`ServeSettings` fields (a Serve config's ``args:`` mapping). Model
    references resolve here, so a missing folder fails the deploy with its path; API keys
    are read here and only their digests reach the replicas.
    """
    settings = args if isinstance(args, ServeSettings) else parse_config(dict(args), ServeSettings, "build_app args")
    embedder_path = str(resolve_model(settings.embedder))
    reranker_path = str(resolve_model(settings.reranker)) if settings.reranker else None
    embedder = EmbedderDeployment.bind(embedder_path, settings.embedder_batching.model_dump(), settings.over_length)
    reranker = RerankerDeployment.bind(reranker_path, settings.reranker_batching.model_dump()) if reranker_path else None
    limits = Limits(settings.max_inputs, settings.max_body_bytes, load_key_digests(settings.api_key_env, settings.api_key_file))
    return Ingress.bind(
        embedder,
        reranker,
        served_names(settings.embedder, embedder_path, settings.embedder_name),
        served_names(settings.reranker, reranker_path, settings.reranker_name) if reranker_path else None,
        limits,
    )


def start_local(settings: ServeSettings | dict[str, Any], *, host: str = "127.0.0.1", port: int = 8000, name: str = APP_NAME) -> str:
    """Start Serve's HTTP proxy on ``host:port``, deploy the app, wait until healthy; returns its URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(settings), name=name, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def deploy_config(config: str | Path | dict[str, Any], timeout_s: float = 600) -> dict[str, str]:
    """Deploy a Serve config file (the same YAML ``serve run`` / ``serve deploy`` take) and wait.

    Returns each application's URL prefix. The HTTP host and port come from the config's
    ``http_options``.
    """
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


def stop_local() -> None:
    """Delete every application and stop Serve (controller and proxies)."""
    serve.shutdown()
