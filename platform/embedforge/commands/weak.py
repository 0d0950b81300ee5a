"""``embedforge weak``: Make weak (query, passage) pairs from the corpus text itself (title, ICT, crop), no LLM, on Ray Data."""

from __future__ import annotations

import argparse

from embedforge.commands.data_stage import add_arguments, run_data_stage

HELP = "Make weak (query, passage) pairs from the corpus text itself (title, ICT, crop), no LLM, on Ray Data."

__all__ = ["HELP", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from embedforge.synthesis.weak import WeakConfig, run_weak

    return run_data_stage(args, WeakConfig, run_weak)
