"""``embedforge train --config C``: stage 1 or 2 training of an embedder or reranker on Ray Train."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Train an embedder (stage 1 or 2) or a reranker (stage 2) on Ray Train from a YAML config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="training config, e.g. jobs/configs/embedder_tiny.yaml")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import ConfigError
    from embedforge.inputs import input_problems
    from embedforge.training import load_stage_config, run_training

    config = load_stage_config(args.config)
    problems = input_problems(config)
    if problems:
        raise ConfigError("\n".join(f"{args.config}: {problem}" for problem in problems))
    result = run_training(config)
    last = result.metrics[-1] if result.metrics else {}
    print(f"trained {config.model.kind} (stage {config.stage}) for {last.get('step', '?')} steps, final loss {last.get('loss', float('nan')):.4f}")
    print(f"final model: {result.final_model}")
    for step, folder in result.merge_candidates.items():
        print(f"merge candidate step {step}: {folder}")
    if result.loss_curve is not None:
        print(f"loss curve: {result.loss_curve}")
    return 0
