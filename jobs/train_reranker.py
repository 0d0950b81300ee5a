"""Train the yes/no reranker (stage 2) on Ray Train; submit with ``ray job submit``.

Run: ``ray job submit --working-dir . -- python jobs/train_reranker.py --config jobs/configs/reranker_tiny.yaml``
Submitting again with the same ``run.name`` and ``run.storage_path`` continues the run.
"""

from __future__ import annotations

import argparse

from embedforge.training import load_stage_config, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    config = load_stage_config(parser.parse_args().config)
    if config.stage == 3 or config.model.kind != "reranker":
        raise SystemExit(f"{parser.parse_args().config}: not a reranker training config (use train_embedder.py or merge.py)")
    result = run_training(config)
    print(f"final model: {result.final_model}\nloss curve: {result.loss_curve}\nmerge candidates: {result.merge_candidates}")


if __name__ == "__main__":
    main()
