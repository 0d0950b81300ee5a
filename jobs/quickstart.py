"""The embedded default job: tiny Qwen3 embedder smoke test, then MiniLM on SciFact.

Run: ``make quickstart`` or ``python jobs/quickstart.py --config jobs/configs/quickstart.yaml``.
Prints nDCG@10 of the packaged all-MiniLM-L6-v2 on the SciFact train queries, computed by
embedforge's own retrieval evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embedforge.config import ConfigModel, load_config
from embedforge.data.beir import RetrievalDataConfig
from embedforge.eval.retrieval import evaluate_retrieval
from embedforge.models.embedder import Embedder
from embedforge.models.qwen3 import build_embedder
from embedforge.models.registry import resolve_model


class EvaluationConfig(RetrievalDataConfig):
    model: str
    batch_size: int = 64


class QuickstartConfig(ConfigModel):
    run_dir: Path
    tiny_embedder_seed: int = 0
    evaluation: EvaluationConfig


def main(config: QuickstartConfig) -> dict[str, float]:
    tiny_dir = build_embedder("tiny", seed=config.tiny_embedder_seed).save(config.run_dir / "tiny-embedder")
    tiny = Embedder.load(tiny_dir)
    print(f"tiny Qwen3 embedder: {tiny_dir} -> {tiny.encode(['hello', 'world']).shape[1]}-d vectors")

    corpus, queries, qrels = config.evaluation.load()
    embedder = Embedder.load(resolve_model(config.evaluation.model))
    print(f"encoding {len(corpus)} SciFact documents and {len(qrels)} train queries with {config.evaluation.model}")
    scores = evaluate_retrieval(embedder, corpus, queries, qrels, batch_size=config.evaluation.batch_size, show_progress=True)
    (config.run_dir / "scifact_train_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(f"nDCG@10 {config.evaluation.model} on SciFact train queries: {scores['ndcg_at_10']:.4f}")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("jobs/configs/quickstart.yaml"))
    main(load_config(parser.parse_args().config, QuickstartConfig))
