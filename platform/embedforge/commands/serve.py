"""``embedforge serve``: run the embedding and reranking API on a local Ray until interrupted."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Serve the embedder (and reranker) over HTTP on Ray Serve until SIGINT/SIGTERM."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="a Serve config YAML (as for `serve run`), e.g. cluster/serve.yaml")
    parser.add_argument("--embedder", default=None, help="embedder folder, or a packaged model name such as all-MiniLM-L6-v2")
    parser.add_argument("--reranker", default=None, help="reranker folder (optional)")
    parser.add_argument("--served-model-name", default=None, help="the embedder's `model` name in requests (default: packaged name, run/stage, or folder name)")
    parser.add_argument("--served-reranker-name", default=None, help="the reranker's `model` name in requests (default as for the embedder)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 to listen on all interfaces")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000, or the config's http_options.port)")
    parser.add_argument("--api-key-file", type=Path, default=None, help="file of bearer keys, one per line; EMBEDFORGE_API_KEYS also works")
    parser.add_argument("--over-length", choices=["truncate", "reject"], default="truncate", help="texts over the model's max_length")
    parser.add_argument("--replicas", type=int, default=None, help="replicas per model (default: one per core on CPU, at most 8; one with a GPU); not with --config")
    parser.add_argument("--address", default=None, help="Ray cluster address to join; default starts a local Ray")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from embedforge.config import ConfigError, read_yaml_mapping
    from embedforge.serving.settings import ServeSettings, settings_problems

    if (args.config is None) == (args.embedder is None):
        raise ValueError("give exactly one of --config or --embedder")
    if args.replicas is not None and args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    if args.replicas is not None and args.config is not None:
        raise ValueError("--replicas is for --embedder; a Serve config sets replicas in its deployments")
    if args.config is not None:
        config = read_yaml_mapping(args.config)
        if args.port is not None:
            config.setdefault("http_options", {})["port"] = args.port
        problems = [] if args.address else [f"{args.config}: {problem}" for problem in config_problems(config)]
    else:
        settings = ServeSettings(
            embedder=args.embedder,
            reranker=args.reranker,
            embedder_name=args.served_model_name,
            reranker_name=args.served_reranker_name,
            api_key_file=args.api_key_file,
            over_length=args.over_length,
        )
        problems = settings_problems(settings)
    if problems:
        raise ConfigError("\n".join(problems))

    import os

    from embedforge.serving.app import default_replicas, use_fast_path

    use_fast_path()  # before Ray (and Serve's constants) load; a joined cluster keeps its own setting
    import ray

    from embedforge.serving.app import deploy_config, start_local, stop_local
    from embedforge.session import RayConfig, ensure_ray

    replicas = args.replicas or (default_replicas() if args.config is None else None)
    # A local Ray gets a logical CPU for each replica (num_cpus: 1 each), however many cores there are.
    models = 1 + bool(args.config is None and args.reranker)
    ensure_ray(RayConfig(address=args.address, num_cpus=max(os.cpu_count() or 1, (replicas or 1) * models + 1)))
    # After ray.init, which installs its own SIGTERM handler that would exit without stopping Serve.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if args.config is not None:
            urls = list(deploy_config(config).values())
        else:
            urls = [start_local(settings, host=args.host, port=args.port or 8000, replicas=replicas)]
        print(f"serving {', '.join(urls)}  (OpenAPI at {urls[0].rstrip('/')}/openapi.json; Ctrl-C stops)", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping: shutting Serve down", flush=True)
    finally:
        stop_local()
        ray.shutdown()
    print("stopped", flush=True)
    return 0


def config_problems(config: dict) -> list[str]:
    """Problems with the embedforge applications of a Serve config, found without starting Ray.

    Besides each application's ``args``, a reranker must be served by an application named
    ``embedforge-reranker`` on route ``/v1/rerank``: that is where the embedder's app finds it.
    """
    from embedforge.config import ConfigError, parse_config
    from embedforge.serving.settings import RERANKER_APP, ServeSettings, settings_problems

    problems, wants_reranker = [], False
    applications = [app for app in config.get("applications") or [] if isinstance(app, dict)]
    for index, application in enumerate(applications):
        import_path = str(application.get("import_path", ""))
        if not import_path.startswith("embedforge."):
            continue
        where = f"applications.{index}.args"
        try:
            settings = parse_config(dict(application.get("args") or {}), ServeSettings, where)
        except ConfigError as error:
            problems += str(error).splitlines()
            continue
        problems += [f"{where}.{problem}" for problem in settings_problems(settings)]
        wants_reranker |= import_path.endswith(":build_app") and settings.reranker is not None
    rerankers = [app for app in applications if str(app.get("import_path", "")).endswith(":build_reranker_app")]
    if wants_reranker and not any(app.get("name") == RERANKER_APP and app.get("route_prefix") == "/v1/rerank" for app in rerankers):
        problems.append(
            f"applications: args.reranker is set, but no application named '{RERANKER_APP}' with route_prefix /v1/rerank "
            "imports embedforge.serving.app:build_reranker_app (see cluster/serve.yaml)"
        )
    return problems
