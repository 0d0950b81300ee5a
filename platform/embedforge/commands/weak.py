"""``embedforge weak``: Make weak (query, passage) pairs from the corpus text itself (title, ICT, crop), no LLM, on Ray Data."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Make weak (query, passage) pairs from the corpus text itself (title, ICT, crop), no LLM, on Ray Data."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see jobs/configs/)")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import load_config
    from embedforge.synthesis.summary import print_summary
    from embedforge.synthesis.weak import WeakConfig, run_weak

    config = load_config(args.config, WeakConfig)
    print_summary(run_weak(config), config.output_dir)
    return 0
