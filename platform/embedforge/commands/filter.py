"""``embedforge filter``: Filter synthetic pairs: teacher-score band, length bounds, exact and near duplicates."""

from __future__ import annotations

import argparse

from embedforge.commands.data_stage import add_arguments, run_data_stage

HELP = "Filter synthetic pairs: teacher-score band, length bounds, exact and near duplicates."

__all__ = ["HELP", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from embedforge.synthesis.filter import FilterConfig, run_filter

    return run_data_stage(args, FilterConfig, run_filter)
