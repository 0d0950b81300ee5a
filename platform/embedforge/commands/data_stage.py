"""What the four data-stage commands (``weak``, ``synthesize``, ``filter``, ``mine``) share:
a ``--config`` YAML in, pair shards out, and a summary of the counts printed at the end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from pydantic import BaseModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see jobs/configs/)")


def run_data_stage(args: argparse.Namespace, config_class: "type[BaseModel]", run: "Callable[[BaseModel], dict]") -> int:
    """Load and validate the whole config, run the stage, print its summary."""
    from embedforge.config import load_config
    from embedforge.synthesis.summary import print_summary

    config = load_config(args.config, config_class)
    print_summary(run(config), config.output_dir)
    return 0
