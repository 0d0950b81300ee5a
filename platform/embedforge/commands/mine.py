"""``embedforge mine``: Mine hard negatives for pairs (synthetic or labelled) with a teacher embedder and faiss."""

from __future__ import annotations

import argparse

from embedforge.commands.data_stage import add_arguments, run_data_stage

HELP = "Mine hard negatives for pairs (synthetic or labelled) with a teacher embedder and faiss."

__all__ = ["HELP", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from embedforge.synthesis.mine import MineConfig, run_mine

    return run_data_stage(args, MineConfig, run_mine)
