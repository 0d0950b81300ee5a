"""``embedforge mine``: Mine hard negatives for pairs (synthetic or labelled) with a teacher embedder and faiss."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Mine hard negatives for pairs (synthetic or labelled) with a teacher embedder and faiss."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see jobs/configs/)")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import load_config
    from embedforge.synthesis.mine import MineConfig, run_mine
    from embedforge.synthesis.summary import print_summary

    config = load_config(args.config, MineConfig)
    print_summary(run_mine(config), config.output_dir)
    return 0
