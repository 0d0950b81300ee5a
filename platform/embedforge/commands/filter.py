"""``embedforge filter``: Filter synthetic pairs: teacher-score band, length bounds, exact and near duplicates."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Filter synthetic pairs: teacher-score band, length bounds, exact and near duplicates."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see jobs/configs/)")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import load_config
    from embedforge.synthesis.filter import FilterConfig, run_filter
    from embedforge.synthesis.summary import print_summary

    config = load_config(args.config, FilterConfig)
    print_summary(run_filter(config), config.output_dir)
    return 0
