"""``embedforge merge``: slerp or linear merge of checkpoints into one loadable model (stage 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Merge model checkpoints (slerp or linear) into one loadable model folder (stage 3), from flags or --config."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="merge YAML with the flags' keys, e.g. jobs/configs/merge_minilm.yaml")
    parser.add_argument("--method", choices=["slerp", "linear"], default=None, help="default: slerp")
    parser.add_argument("--checkpoints", nargs="+", default=None, help="two or more model folders or packaged model names")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one weight >= 0 per checkpoint (default: equal)")
    parser.add_argument("--output", type=Path, default=None, help="folder for the merged model")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    from embedforge.config import ConfigError, load_config, parse_config
    from embedforge.merge import MergeConfig, run_merge

    flags = {key: value for key, value in vars(args).items() if key in ("method", "checkpoints", "weights", "output") and value is not None}
    if args.config is not None:
        if flags:
            raise ConfigError(f"give --config or the flags ({', '.join(f'--{key}' for key in flags)}), not both")
        config, source = load_config(args.config, MergeConfig), str(args.config)
    else:
        config, source = parse_config(flags, MergeConfig, "flags"), "flags"
    missing = [name for name in ("checkpoints", "output") if getattr(config, name) is None]
    if missing:
        raise ConfigError(f"{source}: {', '.join(missing)}: required (give --checkpoints and --output, or --config FILE)")
    if args.overwrite:
        config = config.model_copy(update={"overwrite": True})
    output = run_merge(config)
    print(f"merged {len(config.checkpoints)} checkpoints ({config.method}) into {output}")
    return 0
