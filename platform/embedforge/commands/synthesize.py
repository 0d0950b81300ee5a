"""``embedforge synthesize``: Synthesize (query, passage) training pairs from a corpus with an LLM, on Ray Data."""

from __future__ import annotations

import argparse

from embedforge.commands.data_stage import add_arguments, run_data_stage

HELP = "Synthesize (query, passage) training pairs from a corpus with an LLM, on Ray Data."

__all__ = ["HELP", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize

    return run_data_stage(args, SynthesizeConfig, run_synthesize)
