"""``embedforge train --config C``: stage 1 or 2 training of an embedder or reranker, or the stage 3 merge."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Run a training stage from a YAML config (stage 1/2: Ray Train; stage 3: merge)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="stage config, e.g. jobs/configs/embedder_tiny.yaml")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import ConfigError
    from embedforge.inputs import input_problems
    from embedforge.training import MergeConfig, load_stage_config, run_merge, run_training

    config = load_stage_config(args.config)
    problems = input_problems(config)
    if problems:
        raise ConfigError("\n".join(f"{args.config}: {problem}" for problem in problems))
    if isinstance(config, MergeConfig):
        print(f"merged {len(config.checkpoints)} checkpoints ({config.method}) into {run_merge(config)}")
        return 0
    result = run_training(config)
    last = result.metrics[-1] if result.metrics else {}
    print(f"trained {config.model.kind} (stage {config.stage}) for {last.get('step', '?')} steps, final loss {last.get('loss', float('nan')):.4f}")
    print(f"final model: {result.final_model}")
    for step, folder in result.merge_candidates.items():
        print(f"merge candidate step {step}: {folder}")
    if result.loss_curve is not None:
        print(f"loss curve: {result.loss_curve}")
    return 0
