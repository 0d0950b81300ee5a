"""``embedforge run``: the whole pipeline from one config, resuming where it stopped."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Run the whole pipeline (synthesize .. evaluate, serve) from one config; re-runs resume."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="pipeline YAML, e.g. jobs/configs/quickstart.yaml")
    parser.add_argument("--keep-serving", action="store_true", help="keep the endpoint up until Ctrl-C")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import ConfigError, load_config
    from embedforge.pipeline.checks import check_pipeline
    from embedforge.pipeline.config import PipelineConfig
    from embedforge.pipeline.run import run_pipeline

    config = load_config(args.config, PipelineConfig)
    problems = check_pipeline(config)
    if problems:
        raise ConfigError("\n".join(f"{args.config}: {problem}" for problem in problems))
    if args.keep_serving and config.serve is not None:
        config = config.model_copy(update={"serve": config.serve.model_copy(update={"keep_alive": True})})
    run_pipeline(config)
    return 0
