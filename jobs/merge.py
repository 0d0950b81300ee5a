"""Stage 3: slerp the chosen stage-2 checkpoints into the final model.

Run: ``ray job submit --working-dir . -- python jobs/merge.py --config jobs/configs/merge_minilm.yaml``
"""

from __future__ import annotations

import argparse

from embedforge.training import load_stage_config, run_merge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = load_stage_config(args.config)
    if config.stage != 3:
        raise SystemExit(f"{args.config}: not a merge config (stage: 3)")
    print(f"merged {len(config.checkpoints)} checkpoints into {run_merge(config)}")


if __name__ == "__main__":
    main()
