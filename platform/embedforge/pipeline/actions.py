"""What each pipeline stage does: one plain function per stage, named after it.

Each takes ``(section, folder, upstream)``: the stage's config with its references resolved,
the stage's own folder, and the results of the earlier stages it reads, by stage name. Each
returns a JSON-able summary whose ``output`` is the path later stages read through
``@<stage>`` references. ``serve`` runs at the end and keeps no folder.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from embedforge.pipeline.config import VARIANT_PREFIX
from embedforge.pipeline.stages import StageResult

if TYPE_CHECKING:
    from embedforge.eval.settings import EvaluateConfig
    from embedforge.merge import MergeConfig
    from embedforge.pipeline.config import ServeSection
    from embedforge.synthesis.filter import FilterConfig
    from embedforge.synthesis.mine import MineConfig
    from embedforge.synthesis.synthesize import SynthesizeConfig
    from embedforge.synthesis.weak import WeakConfig
    from embedforge.training.config import TrainConfig

Upstream = Mapping[str, StageResult]
"""The results of the earlier stages a stage reads, by stage name."""


def weak(section: "WeakConfig", folder: Path, upstream: Upstream) -> dict:
    from embedforge.synthesis.weak import run_weak

    return {"output": str(section.output_dir), "stats": run_weak(section)}


def synthesize(section: "SynthesizeConfig", folder: Path, upstream: Upstream) -> dict:
    from embedforge.synthesis.synthesize import run_synthesize

    return {"output": str(section.output_dir), "stats": run_synthesize(section)}


def filter(section: "FilterConfig", folder: Path, upstream: Upstream) -> dict:
    from embedforge.synthesis.filter import run_filter

    return {"output": str(section.output_dir), "stats": run_filter(section)}


def mine(section: "MineConfig", folder: Path, upstream: Upstream) -> dict:
    from embedforge.synthesis.mine import run_mine

    return {"output": str(section.output_dir), "stats": run_mine(section)}


def train(section: "TrainConfig", folder: Path, upstream: Upstream) -> dict:
    """Train on the datasets that hold rows; with none, pass the base model on and say why.

    An upstream stage can legitimately produce no pairs (a generator whose every output was
    rejected); such datasets leave the mixture, and the summary names them.
    """
    from embedforge.models.registry import resolve_model
    from embedforge.training import run_training
    from embedforge.training.pairs import read_pair_rows

    base = str(resolve_model(section.model.base))
    rows = {spec.name: len(read_pair_rows(spec.path, num_negatives=section.data.num_negatives).rows) for spec in section.data.datasets}
    empty = [name for name, count in rows.items() if count == 0]
    if len(empty) == len(rows):
        return {"output": base, "base": base, "trained": False, "rows": rows,
                "reason": "no training rows (every synthetic pair was rejected or filtered out)"}
    datasets = [spec for spec in section.data.datasets if rows[spec.name] > 0]
    result = run_training(section.model_copy(update={"data": section.data.model_copy(update={"datasets": datasets})}))
    return {
        "output": str(result.final_model),
        "base": base,
        "trained": True,
        "rows": rows,
        "empty_datasets_left_out": empty,
        "merge_candidates": {str(step): str(path) for step, path in sorted(result.merge_candidates.items())},
        "final_metrics": result.metrics[-1] if result.metrics else {},
        "skipped_rows": result.skipped_rows,
        "loss_curve": str(result.loss_curve) if result.loss_curve else None,
    }


def merge(section: "MergeConfig", folder: Path, upstream: Upstream) -> dict:
    """Stage 3 over ``section.checkpoints`` (references resolved), else the checkpoints stage 2 kept.

    Without an ``output``, the merged model goes to ``model/`` in the stage's folder, which a
    re-run after a crash may replace.
    """
    from embedforge.merge import run_merge
    from embedforge.models.registry import resolve_model

    if section.checkpoints is None:
        kept = upstream["stage2"].summary["merge_candidates"]
        checkpoints = [path for _, path in sorted(kept.items(), key=lambda item: int(item[0]))]
    else:
        checkpoints = [str(resolve_model(reference)) for reference in section.checkpoints]
    own_folder = {"output": folder / "model", "overwrite": True} if section.output is None else {}
    output = run_merge(section.model_copy(update={"checkpoints": checkpoints, **own_folder}))
    return {"output": str(output), "checkpoints": checkpoints, "weights": section.weights, "method": section.method}


def output_of(upstream: Upstream, name: str) -> str | None:
    """The ``output`` of stage ``name``, or ``None`` when it is not configured."""
    return str(upstream[name].summary["output"]) if name in upstream else None


def models_to_compare(upstream: Upstream) -> dict[str, str]:
    """Base, stage 1 (when it trained), stage 2, its variants (those that trained) and merged models, by label."""

    def trained(name: str) -> bool:
        return name in upstream and bool(upstream[name].summary.get("trained"))

    first = upstream.get("stage1") or upstream["stage2"]
    models = {"base": str(first.summary["base"])}
    if trained("stage1"):
        models["stage1"] = output_of(upstream, "stage1")
    models["stage2"] = output_of(upstream, "stage2")
    for name in upstream:
        if name.startswith(VARIANT_PREFIX) and trained(name):
            models[name] = output_of(upstream, name)
    models["merged"] = output_of(upstream, "merge")
    return models


def evaluate(section: "EvaluateConfig", folder: Path, upstream: Upstream) -> dict:
    """Evaluate each model on the offline tasks, then check the held-out gates.

    The reranker reranks the merged model's top hits. ``results`` holds one run per label; the
    reranked run is ``merged+reranker``, beside ``merged``. ``gates`` compares the merged model
    with the base and the reranked run with ``merged`` (``embedforge.eval.gates``), with a
    paired bootstrap over the retrieval tasks' per-query scores and the STS tasks' per-pair
    ones; each failed gate is printed.
    """
    from embedforge.eval.gates import failed, run_gates
    from embedforge.eval.runner import run_evaluate

    models = models_to_compare(upstream)
    reranker = output_of(upstream, "reranker")
    runs = {}
    for label, path in models.items():
        with_reranker = reranker if label == "merged" else None
        runs.update(run_evaluate(path, folder / label, section, reranker=with_reranker, label=label))
    results = {run: {task: scores.metrics for task, scores in by_task.items()} for run, by_task in runs.items()}
    query_scores = {run: {task: scores.per_query for task, scores in by_task.items() if scores.per_query} for run, by_task in runs.items()}
    pair_scores = {run: {task: scores.per_pair for task, scores in by_task.items() if scores.per_pair} for run, by_task in runs.items()}
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    gates = run_gates(results, final="merged", max_drop=section.gate_max_drop, query_scores=query_scores, pair_scores=pair_scores)
    for gate in failed(gates):
        print(f"[evaluate] held-out gate failed: {gate.line()}", file=sys.stderr, flush=True)
    return {"output": str(folder), "models": models, "reranker": reranker, "results": results, "gates": [gate.to_dict() for gate in gates]}


def served_reranker(upstream: Upstream) -> tuple[str | None, str | None]:
    """The reranker to serve and, when one was trained but is held back, why.

    A reranker whose held-out gate failed in the run's evaluation (it lowered the score of
    the model whose hits it reorders) is not served.
    """
    from embedforge.eval.gates import RERANKED_SUFFIX, failed, gates_from_dicts

    reranker = output_of(upstream, "reranker")
    if reranker is None or "evaluate" not in upstream:
        return reranker, None
    worse = [gate for gate in failed(gates_from_dicts(upstream["evaluate"].summary.get("gates", []))) if gate.model.endswith(RERANKED_SUFFIX)]
    if worse:
        return None, f"not serving the reranker {reranker}: its held-out gate failed ({worse[0].line()})"
    return reranker, None


def serve(section: "ServeSection", upstream: Upstream, log: Callable[[str], None] = print) -> dict:
    """Serve the merged model (and the reranker, unless it failed its gate), answer one sample request, and stop unless asked to stay up."""
    import httpx

    from embedforge.serving.app import start_local, stop_local
    from embedforge.serving.settings import ServeSettings

    reranker, held_back = served_reranker(upstream)
    if held_back:
        log(f"[serve] {held_back}")
    url = start_local(ServeSettings(embedder=output_of(upstream, "merge"), reranker=reranker), host=section.host, port=section.port)
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
