"""``embedforge synthesize``: Synthesize (query, passage) training pairs from a corpus with an LLM, on Ray Data."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Synthesize (query, passage) training pairs from a corpus with an LLM, on Ray Data."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see jobs/configs/)")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import load_config
    from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize
    from embedforge.synthesis.summary import print_summary

    config = load_config(args.config, SynthesizeConfig)
    print_summary(run_synthesize(config), config.output_dir)
    return 0
