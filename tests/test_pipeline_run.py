"""``embedforge run`` on a local Ray: the tiny pipeline end to end, then a resume that skips every stage.

Stage 1 must train on the weak pool (the ``weak`` stage's pairs and the unfiltered synthetic
pairs), stage 2 on the labelled pairs; every model stage gets its stable name under
``run_dir``; the report compares every model with the base, and its numbers are those of a
separate ``embedforge evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedforge.config import parse_config, read_yaml_mapping
from embedforge.pipeline.config import PipelineConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, local_ray):
    from embedforge.pipeline.run import run_pipeline

    data = read_yaml_mapping(REPO_ROOT / "jobs/configs/pipeline_tiny.yaml")
    data["run_dir"] = str(tmp_path_factory.mktemp("pipeline") / "run")
    config = parse_config(data, PipelineConfig, "pipeline_tiny.yaml")
    lines: list[str] = []
    results = run_pipeline(config, log=lines.append)
    return config, results, lines


def test_stage1_trains_on_the_weak_pool(tiny_run):
    config, results, _ = tiny_run
    weak = results["weak"].summary
    assert weak["stats"]["accepted"] > 0
    stage1 = results["stage1"].summary
    assert stage1["trained"] is True
    assert stage1["rows"]["weak"] == weak["stats"]["accepted"]
    assert Path(results["stage2"].summary["output"]).is_dir()
    stage2_rows = json.loads((results["stage2"].folder / "_COMPLETE.json").read_text())["summary"]["rows"]
    assert set(stage2_rows) == {"scifact"} and 0 < stage2_rows["scifact"] <= results["mine_labelled"].summary["stats"]["pairs"]


def test_results_have_stable_names_that_load(tiny_run):
    from embedforge.models.embedder import Embedder
    from embedforge.models.reranker import load_reranker

    config, results, _ = tiny_run
    run_dir = Path(config.run_dir)
    for name, stage in (("stage1", "stage1"), ("stage2", "stage2"), ("final", "merge"), ("reranker", "reranker")):
        link = run_dir / name
        assert link.is_symlink() and link.resolve() == Path(results[stage].summary["output"]).resolve(), name
    assert Embedder.load(run_dir / "final", device="cpu").encode(["a claim"]).shape[0] == 1
    assert load_reranker(run_dir / "reranker", device="cpu") is not None


def test_report_shows_every_model_against_the_base(tiny_run):
    config, _, _ = tiny_run
    report = (Path(config.run_dir) / "report.md").read_text()
    assert "## Change against the base model" in report
    delta_header = next(line for line in report.splitlines() if line.startswith("| task | stage1 - base"))
    assert "merged - base" in delta_header


def test_the_run_gates_the_final_model_and_the_reranker_on_its_own_scores(tiny_run):
    config, results, _ = tiny_run
    evaluate = results["evaluate"].summary
    scores = {label: {task: metrics["main_score"] for task, metrics in runs.items()} for label, runs in evaluate["results"].items()}
    pairs = {(gate["model"], gate["reference"], gate["task"]): gate for gate in evaluate["gates"]}
    expected = {("merged", "base", task) for task in scores["merged"]} | {("merged+reranker", "merged", task) for task in scores["merged+reranker"]}
    assert set(pairs) == expected
    for (model, reference, task), gate in pairs.items():
        assert gate["delta"] == pytest.approx(scores[model][task] - scores[reference][task])
        assert gate["passed"] == (gate["delta"] >= -config.evaluate.gate_max_drop)
        # every gate carries a paired bootstrap interval: of the per-query nDCG@10 (scifact-dev), of Spearman over the pairs (stsb-dev)
        assert gate["low"] <= gate["delta"] <= gate["high"]
    assert "## Held-out gates" in (Path(config.run_dir) / "report.md").read_text()


def test_report_numbers_equal_a_separate_evaluate(tiny_run, tmp_path):
    """``embedforge evaluate`` on the merged model and reranker gives the pipeline's numbers."""
    from embedforge.cli import main

    config, results, _ = tiny_run
    evaluate = results["evaluate"]
    pipeline_results = json.loads((evaluate.folder / "merged" / "results.json").read_text())  # as `embedforge evaluate` writes it
    settings = config.evaluate
    output = tmp_path / "separate-evaluate"
    arguments = ["evaluate", "--model", evaluate.summary["models"]["merged"], "--reranker", evaluate.summary["reranker"],
                 "--tasks", ",".join(settings.tasks), "--max-queries", str(settings.limits.max_queries),
                 "--max-corpus-docs", str(settings.limits.max_corpus_docs), "--rerank-top-k", str(settings.rerank_top_k), "--output", str(output)]  # fmt: skip
    assert main(arguments) == 0
    separate = json.loads((output / "results.json").read_text())
    assert set(separate) == set(pipeline_results)
    for task, metrics in separate.items():
        assert abs(metrics["main_score"] - pipeline_results[task]["main_score"]) < 1e-6, task


def test_a_second_run_skips_every_stage(tiny_run):
    from embedforge.pipeline.run import run_pipeline

    config, first, _ = tiny_run
    lines: list[str] = []
    again = run_pipeline(config, log=lines.append)
    assert all(result.skipped for result in again.values())
    assert {name: result.folder for name, result in again.items()} == {name: result.folder for name, result in first.items()}


def test_every_result_path_the_docs_name_exists_after_a_run(tiny_run):
    """README, docs and cluster manifests name results as ``runs/quickstart/<name>``: each must exist after a run."""
    import re

    config, _, _ = tiny_run
    texts = [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md"), *(REPO_ROOT / "cluster").glob("*.yaml")]
    named = {match for path in texts for match in re.findall(r"runs/(?:quickstart|qwen3-0\.6b|minilm-scifact)/([\w.-]+)", path.read_text())}
    assert {"final", "reranker", "report.md"} <= named
    missing = [name for name in sorted(named) if not (Path(config.run_dir) / name).exists()]
    assert missing == []
