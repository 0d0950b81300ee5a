"""``embedforge merge``: slerp or linear merge of checkpoints into one loadable model (stage 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Merge model checkpoints (slerp or linear) into one loadable model folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["slerp", "linear"], default="slerp")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="two or more model folders")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one positive weight per checkpoint (default: equal)")
    parser.add_argument("--output", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    from embedforge.merge import merge_checkpoints

    if len(args.checkpoints) < 2:
        raise ValueError("merge needs at least two checkpoints")
    if args.weights is not None and len(args.weights) != len(args.checkpoints):
        raise ValueError(f"got {len(args.weights)} weights for {len(args.checkpoints)} checkpoints")
    merge_checkpoints(args.checkpoints, args.output, weights=args.weights, method=args.method)
    print(f"merged {len(args.checkpoints)} checkpoints ({args.method}) into {args.output}")
    return 0
