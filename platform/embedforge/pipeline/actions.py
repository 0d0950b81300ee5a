"""What each pipeline stage does, given its resolved config and its folder.

Every action returns a JSON-able summary whose ``output`` is the path later stages read
through ``@<stage>`` references.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from embedforge.pipeline.stages import StageResult

if TYPE_CHECKING:
    from embedforge.eval.runner import EvaluationSettings
    from embedforge.pipeline.config import MergeSection, ServeSection
    from embedforge.pipeline.run import Pipeline
    from embedforge.synthesis.filter import FilterConfig
    from embedforge.synthesis.synthesize import SynthesizeConfig
    from embedforge.synthesis.mine import MineConfig
    from embedforge.synthesis.weak import WeakConfig
    from embedforge.training.config import TrainConfig


def weak(config: "WeakConfig", folder: Path) -> dict:
    from embedforge.synthesis.weak import run_weak

    return {"output": str(config.output_dir), "stats": run_weak(config)}


def synthesize(config: "SynthesizeConfig", folder: Path) -> dict:
    from embedforge.synthesis.synthesize import run_synthesize

    return {"output": str(config.output_dir), "stats": run_synthesize(config)}


def filter_pairs(config: "FilterConfig", folder: Path) -> dict:
    from embedforge.synthesis.filter import run_filter

    return {"output": str(config.output_dir), "stats": run_filter(config)}


def mine(config: "MineConfig", folder: Path) -> dict:
    from embedforge.synthesis.mine import run_mine

    return {"output": str(config.output_dir), "stats": run_mine(config)}


def train(config: "TrainConfig", folder: Path) -> dict:
    """Train on the datasets that hold rows; with none, pass the base model on and say why.

    An upstream stage can legitimately produce no pairs (a generator whose every output was
    rejected); such datasets leave the mixture, and the summary names them.
    """
    from embedforge.models.registry import resolve_model
    from embedforge.training import run_training
    from embedforge.training.pairs import read_pair_rows

    rows = {spec.name: len(read_pair_rows(spec.path, num_negatives=config.data.num_negatives).rows) for spec in config.data.datasets}
    empty = [name for name, count in rows.items() if count == 0]
    if len(empty) == len(rows):
        return {"output": str(resolve_model(config.model.base)), "trained": False, "rows": rows,
                "reason": "no training rows (every synthetic pair was rejected or filtered out)"}
    datasets = [spec for spec in config.data.datasets if rows[spec.name] > 0]
    config = config.model_copy(update={"data": config.data.model_copy(update={"datasets": datasets})})
    result = run_training(config)
    return {
        "output": str(result.final_model),
        "trained": True,
        "rows": rows,
        "empty_datasets_left_out": empty,
        "merge_candidates": {str(step): str(path) for step, path in sorted(result.merge_candidates.items())},
        "final_metrics": result.metrics[-1] if result.metrics else {},
        "skipped_rows": result.skipped_rows,
        "loss_curve": str(result.loss_curve) if result.loss_curve else None,
    }


def merge_from(stage2: StageResult) -> Callable[["MergeSection", Path], dict]:
    """Stage 3 over ``section.models`` (references already resolved), else the checkpoints stage 2 kept."""

    def merge(section: "MergeSection", folder: Path) -> dict:
        from embedforge.models.registry import resolve_model
        from embedforge.training import MergeConfig, run_merge

        if section.models is not None:
            candidates = [str(resolve_model(model)) for model in section.models]
        else:
            candidates = [path for _, path in sorted(stage2.summary["merge_candidates"].items(), key=lambda item: int(item[0]))]
        config = MergeConfig(stage=3, checkpoints=candidates, weights=section.weights, method=section.method, output=folder / "model")
        return {"output": str(run_merge(config)), "checkpoints": candidates, "weights": section.weights, "method": section.method}

    return merge


def models_to_compare(pipeline: "Pipeline") -> dict[str, str]:
    """Base, stage 1 (when it trained), stage 2 (and from the base, when configured) and merged models, by label."""
    from embedforge.models.registry import resolve_model

    first = pipeline.config.stage1 or pipeline.config.stage2
    models = {"base": str(resolve_model(first.model.base))}
    if pipeline.results.get("stage1") and pipeline.results["stage1"].summary.get("trained"):
        models["stage1"] = pipeline.output("stage1")
    models["stage2"] = pipeline.output("stage2")
    if pipeline.results.get("stage2_from_base") and pipeline.results["stage2_from_base"].summary.get("trained"):
        models["stage2_from_base"] = pipeline.output("stage2_from_base")
    models["merged"] = pipeline.output("merge")
    return models


def evaluate_models(models: dict[str, str], reranker: str | None) -> Callable[["EvaluationSettings", Path], dict]:
    """Evaluate each model on the offline tasks; the reranker reranks the merged model's top hits."""

    def evaluate(settings: "EvaluationSettings", folder: Path) -> dict:
        from embedforge.eval.runner import run_evaluation

        results = {}
        for label, path in models.items():
            with_reranker = reranker if label == "merged" else None
            results[label] = run_evaluation(path, folder / label, settings, reranker=with_reranker, label=label)
        (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return {"output": str(folder), "models": models, "reranker": reranker, "results": results}

    return evaluate


def write_run_report(pipeline: "Pipeline") -> Path:
    from embedforge.pipeline.report import write_run_report

    return write_run_report({name: result.summary for name, result in pipeline.results.items()}, pipeline.run_dir)


def serve(section: "ServeSection", *, embedder: str, reranker: str | None, log: Callable[[str], None] = print) -> dict:
    """Serve the models, answer one sample request, and stop unless asked to stay up."""
    import httpx

    from embedforge.serving.app import start_local, stop_local
    from embedforge.serving.settings import ServeSettings

    url = start_local(ServeSettings(embedder=embedder, reranker=reranker), host=section.host, port=section.port)
    try:
        models = httpx.get(f"{url}/v1/models", timeout=60).raise_for_status().json()["data"]
        embedder_name = next(card["id"] for card in models if card["kind"] == "embedder")
        request = {"model": embedder_name, "input": [section.sample_query], "input_type": "query"}
        embedding = httpx.post(f"{url}/v1/embeddings", json=request, timeout=120).raise_for_status().json()
        sample = {"embedding_dimensions": len(embedding["data"][0]["embedding"]), "usage": embedding["usage"]}
        if reranker:
            documents = ["MicroRNAs regulate gene expression and act as oncogenes or tumour suppressors.", "The Eiffel Tower is in Paris."]
            rerank = httpx.post(f"{url}/v1/rerank", json={"query": section.sample_query, "documents": documents}, timeout=120).raise_for_status().json()
            sample["rerank"] = rerank["results"]
        log(f"endpoint {url} answered: {json.dumps(sample)}")
        if section.keep_alive:
            log(f"serving at {url} until Ctrl-C")
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            stop.wait()
        return sample
    finally:
        stop_local()
        log("endpoint shut down")
