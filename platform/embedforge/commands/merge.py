"""``embedforge merge``: slerp or linear merge of checkpoints into one loadable model (stage 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Merge model checkpoints (slerp or linear) into one loadable model folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["slerp", "linear"], default="slerp")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="two or more model folders or packaged model names")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one positive weight per checkpoint (default: equal)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")


def run(args: argparse.Namespace) -> int:
    from embedforge.models.folders import require_model_folder
    from embedforge.models.registry import resolve_model
    from embedforge.outputs import check_output_folder

    if len(args.checkpoints) < 2:
        raise ValueError("merge needs at least two checkpoints")
    if args.weights is not None and len(args.weights) != len(args.checkpoints):
        raise ValueError(f"got {len(args.weights)} weights for {len(args.checkpoints)} checkpoints")
    checkpoints = [require_model_folder(resolve_model(reference)) for reference in args.checkpoints]
    if any(args.output.resolve() == folder.resolve() for folder in checkpoints):
        raise ValueError(f"{args.output}: is one of the checkpoints; merge into another folder")
    check_output_folder(args.output, overwrite=args.overwrite)

    from embedforge.merge import merge_checkpoints
    from embedforge.outputs import replacing_folder

    with replacing_folder(args.output) as staging:
        merge_checkpoints(checkpoints, staging, weights=args.weights, method=args.method)
    print(f"merged {len(checkpoints)} checkpoints ({args.method}) into {args.output}")
    return 0
