"""``run_evaluate``: a model (and optionally a reranker) on a list of tasks, through mteb.

Writes into the output folder:

- ``results.json``: ``{task: {metric: value, ..., "main_score": v}}``, mteb's metric names;
  with a reranker, retrieval tasks appear again as ``"<task>+reranker"``;
- ``results_by_subset.json``: the same per split and subset (languages, language pairs);
- ``query_scores.json``: ``{task: {"split/subset/query_id": nDCG@10}}`` for the retrieval
  tasks that keep them (``LocalRetrieval``: every offline one), weighted so that their mean
  is the task's main score;
- ``pair_scores.json``: ``{task: {"split/subset": {"gold": [...], "predicted": [...]}}}`` for
  the STS tasks: every pair's gold similarity and the model's cosine, in the task's order,
  from mteb's saved predictions;
- ``results.md``: a table of main scores; ``main_scores.png``: the same as a chart.

:func:`run_evaluate` returns the scores by run: the model's label, and with a reranker
``"<label>+reranker"`` as a run of its own, so reports compare them side by side. Each
task's :class:`TaskScores` carries the per-query and per-pair scores too, which the
pipeline's held-out gates bootstrap over (``embedforge.eval.gates``). The pipeline calls it
with the ``EvaluateConfig`` of its config; ``embedforge evaluate`` builds the settings from
its flags.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Mapping, NamedTuple

from embedforge.eval.gates import RERANKED_SUFFIX
from embedforge.eval.report import main_score_table, plot_main_scores
from embedforge.eval.results import Metrics, mean_metrics, subset_metrics
from embedforge.eval.settings import EvaluateConfig
from embedforge.eval.tasks import build_task
from embedforge.eval.tasks.mteb_format import LocalRetrieval
from embedforge.json_files import write_json

logger = logging.getLogger(__name__)

RERANKABLE_TYPES = {"Retrieval"}
QUERY_SCORES_FILE = "query_scores.json"
PAIR_SCORES_FILE = "pair_scores.json"

TaskPairScores = dict[str, dict[str, list[float]]]
"""``{"split/subset": {"gold": [...], "predicted": [...]}}``: an STS task's pairs, in its order."""


class TaskScores(NamedTuple):
    """One task's scores in one run: mean metrics, metrics per ``split/subset``, per query and per pair (or None)."""

    metrics: Metrics
    per_subset: dict[str, Metrics]
    per_query: dict[str, float] | None
    per_pair: TaskPairScores | None = None


def run_evaluate(
    model: str | Path,
    output_dir: str | Path,
    settings: EvaluateConfig | None = None,
    *,
    reranker: str | Path | None = None,
    device: str | None = None,
    label: str | None = None,
    show_progress: bool = False,
) -> dict[str, dict[str, TaskScores]]:
    """Evaluate ``model`` (a folder or packaged model name) and write the report files.

    Returns ``{run: {task: TaskScores}}``: the run ``label`` (default: the model folder's name),
    and with ``reranker`` also ``"<label>+reranker"`` for the retrieval tasks.
    ``show_progress`` prints a line per step and an encoding progress bar to stderr.
    """
    import mteb

    from embedforge.eval.mteb_encoder import MtebEncoder
    from embedforge.eval.mteb_reranker import RerankingSearch
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model

    settings = settings or EvaluateConfig()
    output_dir = Path(output_dir)
    tasks = [build_task(name, settings.limits) for name in settings.tasks]
    name = label or Path(str(model)).name
    encoder = MtebEncoder(
        Embedder.load(resolve_model(model), device=device),
        name=name,
        use_instructions=settings.use_instructions,
        instructions=settings.instructions,
        dimensions=settings.dimensions,
        batch_size=settings.batch_size,
        show_progress=show_progress,
    )
    if show_progress:
        print(f"evaluate: {name} on {', '.join(settings.tasks)}", file=sys.stderr, flush=True)
    runs = {name: evaluate_with(mteb, encoder, tasks, settings.batch_size)}
    if reranker is not None:
        from embedforge.models.reranker import load_reranker

        search = RerankingSearch(
            encoder,
            load_reranker(resolve_model(reranker), device=device),
            rerank_top_k=settings.rerank_top_k,
            batch_size=settings.rerank_batch_size,
            name=f"{name}{RERANKED_SUFFIX}",
        )
        rerankable = [task for task in tasks if task.metadata.type in RERANKABLE_TYPES]
        if show_progress:
            print(f"evaluate: reranking {name}'s top {settings.rerank_top_k} with {reranker}", file=sys.stderr, flush=True)
        skipped = [task.metadata.name for task in tasks if task.metadata.type not in RERANKABLE_TYPES]
        if skipped:
            logger.info("reranker: not applicable to %s (not retrieval tasks)", ", ".join(skipped))
        runs[f"{name}{RERANKED_SUFFIX}"] = evaluate_with(mteb, search, rerankable, settings.batch_size)
    write_eval_report(runs, output_dir, {task.metadata.name: task.metadata.main_score for task in tasks})
    return runs


def evaluate_with(mteb_module, model, tasks: list, batch_size: int) -> dict[str, TaskScores]:
    """``{task: TaskScores}`` from ``mteb.evaluate``, in the order of ``tasks``.

    STS tasks run in a call of their own that saves mteb's predictions to a scratch folder,
    which :func:`pair_scores` reads; the other tasks' predictions are not needed, and
    retrieval ones run to megabytes a task (SciFact dev 5 MB, XQuAD-en 8 MB).
    """
    sts = [task for task in tasks if task.metadata.type == "STS"]
    calls = [([task for task in tasks if task.metadata.type != "STS"], False), (sts, True)]
    results = {}
    with tempfile.TemporaryDirectory(prefix="mteb-predictions-") as predictions:
        for group, keep_predictions in calls:
            if not group:
                continue
            by_name = {task.metadata.name: task for task in group}
            result = mteb_module.evaluate(
                model,
                group,
                cache=None,
                co2_tracker=False,
                show_progress_bar=False,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
                raise_error=True,
                prediction_folder=predictions if keep_predictions else None,
            )
            for task_result in result.task_results:
                task = by_name[task_result.task_name]
                per_subset = subset_metrics(task_result)
                per_pair = pair_scores(task, Path(predictions)) if keep_predictions else None
                results[task_result.task_name] = TaskScores(mean_metrics(per_subset), per_subset, take_query_scores(task), per_pair)
    return {task.metadata.name: results[task.metadata.name] for task in tasks if task.metadata.name in results}


def take_query_scores(task) -> dict[str, float] | None:
    """The per-query scores a ``LocalRetrieval`` task kept in its last evaluation, cleared for the next.

    Keys are ``split/subset/query_id``. Each score is weighted by ``n / (S * n_s)`` (``n``
    queries in all, ``n_s`` in its subset, ``S`` subsets), so their plain mean is mteb's main
    score, the mean over subsets of each subset's mean; with one subset the weight is 1.
    """
    kept = task.query_scores if isinstance(task, LocalRetrieval) else None
    if not kept:
        return None
    task.query_scores = {}
    total = sum(len(scores) for scores in kept.values())
    return {
        f"{subset}/{query_id}": score * total / (len(kept) * len(scores))
        for subset, scores in kept.items()
        for query_id, score in scores.items()
    }


def pair_scores(task, predictions: Path) -> TaskPairScores:
    """An STS task's gold and predicted (cosine) similarity of every pair, by ``split/subset``.

    The predicted ones come from the predictions ``mteb.evaluate`` saved into ``predictions``
    (``<task>_predictions.json``, in the dataset's order), the gold ones from the task's data,
    loaded again (the same deterministic pairs) where mteb unloaded it.
    """
    task.load_data()
    saved = json.loads((predictions / f"{task.metadata.name}_predictions.json").read_text())
    return {
        f"{split}/{subset}": {"gold": [float(score) for score in task.dataset[subset][split]["score"]], "predicted": scores["cosine_scores"]}
        for subset, by_split in saved.items()
        if subset in task.dataset
        for split, scores in by_split.items()
    }


def write_eval_report(runs: Mapping[str, Mapping[str, TaskScores]], output_dir: Path, main_metrics: Mapping[str, str]) -> dict[str, Metrics]:
    """Write results.json, results_by_subset.json, query_scores.json, pair_scores.json, results.md and main_scores.png; return results.json."""
    labels = list(runs)
    flat: dict[str, Metrics] = {}
    by_subset: dict[str, dict[str, Metrics]] = {}
    by_query: dict[str, dict[str, float]] = {}
    by_pair: dict[str, TaskPairScores] = {}
    for index, label in enumerate(labels):
        suffix = "" if index == 0 else RERANKED_SUFFIX
        for task, scores in runs[label].items():
            flat[f"{task}{suffix}"] = scores.metrics
            by_subset[f"{task}{suffix}"] = scores.per_subset
            if scores.per_query is not None:
                by_query[f"{task}{suffix}"] = scores.per_query
            if scores.per_pair is not None:
                by_pair[f"{task}{suffix}"] = scores.per_pair
    write_json(output_dir / "results.json", flat)
    write_json(output_dir / "results_by_subset.json", by_subset)
    write_json(output_dir / QUERY_SCORES_FILE, by_query)
    write_json(output_dir / PAIR_SCORES_FILE, by_pair)
    table_runs = {label: {task: scores.metrics for task, scores in runs[label].items()} for label in labels}
    table = main_score_table(table_runs, main_metrics)
    (output_dir / "results.md").write_text(f"# Evaluation: {labels[0]}\n\n{table}\n")
    plot_main_scores(table_runs, output_dir / "main_scores.png", title=f"{labels[0]}: main score per task")
    return flat
