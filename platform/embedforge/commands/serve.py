"""``embedforge serve``: run the embedding and reranking API on a local Ray until interrupted."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Serve the embedder (and reranker) over HTTP on Ray Serve until SIGINT/SIGTERM."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="a Serve config YAML (as for `serve run`), e.g. cluster/serve.yaml")
    parser.add_argument("--embedder", default=None, help="embedder folder, or a packaged model name such as all-MiniLM-L6-v2")
    parser.add_argument("--reranker", default=None, help="reranker folder (optional)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 to listen on all interfaces")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000, or the config's http_options.port)")
    parser.add_argument("--api-key-file", type=Path, default=None, help="file of bearer keys, one per line; EMBEDFORGE_API_KEYS also works")
    parser.add_argument("--over-length", choices=["truncate", "reject"], default="truncate", help="texts over the model's max_length")
    parser.add_argument("--address", default=None, help="Ray cluster address to join; default starts a local Ray")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    import ray
    import yaml

    from embedforge.serving.app import deploy_config, start_local, stop_local
    from embedforge.serving.settings import ServeSettings

    if (args.config is None) == (args.embedder is None):
        raise ValueError("give exactly one of --config or --embedder")
    ray.init(address=args.address, configure_logging=False)
    # After ray.init, which installs its own SIGTERM handler that would exit without stopping Serve.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if args.config is not None:
            config = yaml.safe_load(args.config.read_text())
            if args.port is not None:
                config.setdefault("http_options", {})["port"] = args.port
            urls = list(deploy_config(config).values())
        else:
            settings = ServeSettings(
                embedder=args.embedder, reranker=args.reranker, api_key_file=args.api_key_file, over_length=args.over_length
            )
            urls = [start_local(settings, host=args.host, port=args.port or 8000)]
        print(f"serving {', '.join(urls)}  (OpenAPI at {urls[0].rstrip('/')}/openapi.json; Ctrl-C stops)", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping: shutting Serve down", flush=True)
    finally:
        stop_local()
        ray.shutdown()
    print("stopped", flush=True)
    return 0
