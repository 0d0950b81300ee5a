"""Stage keys, skipping and references of the pipeline, without running any model."""

import json

import pytest

from embedforge.pipeline.references import find_references, resolve_references
from embedforge.pipeline.stages import COMPLETE_MARKER, run_stage


def test_references_are_found_and_resolved():
    section = {"base": "@stage1", "data": {"datasets": [{"path": "@mine_labelled"}, {"path": "plain.jsonl"}]}, "out": "@out"}
    assert find_references(section) == {"stage1", "mine_labelled"}
    resolved = resolve_references(section, {"stage1": "/m/s1", "mine_labelled": "/d/ml"}, "/run/stage2-x")
    assert resolved == {"base": "/m/s1", "data": {"datasets": [{"path": "/d/ml"}, {"path": "plain.jsonl"}]}, "out": "/run/stage2-x"}
    with pytest.raises(ValueError, match="'@nowhere' names no earlier stage"):
        resolve_references({"x": "@nowhere"}, {}, "/f")


def test_complete_stage_is_skipped_and_changed_config_reruns(tmp_path):
    calls = []

    def action(folder):
        calls.append(folder)
        (folder / "data.txt").write_text("made")
        return {"output": str(folder / "data.txt")}

    first = run_stage("mine", tmp_path, {"k": 1}, action, log=lambda _: None)
    again = run_stage("mine", tmp_path, {"k": 1}, action, log=lambda _: None)
    changed = run_stage("mine", tmp_path, {"k": 2}, action, log=lambda _: None)
    assert len(calls) == 2 and again.skipped and not first.skipped and not changed.skipped
    assert again.folder == first.folder != changed.folder
    assert json.loads((first.folder / COMPLETE_MARKER).read_text())["summary"] == first.summary


def test_upstream_change_changes_the_downstream_key(tmp_path):
    quiet = dict(log=lambda _: None)
    up_a = run_stage("up", tmp_path, {"v": "a"}, lambda folder: {"output": "a"}, **quiet)
    up_b = run_stage("up", tmp_path, {"v": "b"}, lambda folder: {"output": "b"}, **quiet)
    down_a = run_stage("down", tmp_path, {}, lambda folder: {"output": "x"}, [up_a], **quiet)
    down_b = run_stage("down", tmp_path, {}, lambda folder: {"output": "x"}, [up_b], **quiet)
    assert down_a.key != down_b.key


def test_crashed_stage_leaves_no_marker_and_runs_again(tmp_path):
    def crash(folder):
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        run_stage("train", tmp_path, {}, crash, log=lambda _: None)
    assert not list(tmp_path.glob(f"train-*/{COMPLETE_MARKER}"))
    result = run_stage("train", tmp_path, {}, lambda folder: {"output": "ok"}, log=lambda _: None)
    assert not result.skipped and result.summary == {"output": "ok"}


def test_run_report_compares_models_and_shows_the_reranker_as_its_own_row(tmp_path):
    from embedforge.pipeline.report import write_run_report

    results = {
        "base": {"scifact-dev": {"main_score": 0.61}},
        "merged": {"scifact-dev": {"main_score": 0.66}},
        "merged+reranker": {"scifact-dev": {"main_score": 0.7}},
    }
    summaries = {
        "stage1": {"trained": False, "reason": "no training rows", "rows": {"synthetic": 0}, "output": "/m/base"},
        "evaluate": {"results": results, "models": {"base": "/m/base", "merged": "/m/merged"}, "reranker": "/m/rr"},
    }
    report = write_run_report(summaries, tmp_path).read_text()
    assert "| task | metric | base | merged | merged+reranker |" in report
    assert "| scifact-dev | main_score | 0.6100 | 0.6600 | 0.7000 |" in report
    assert "**stage1**: not trained: no training rows" in report
    assert (tmp_path / "comparison.png").stat().st_size > 1000


def test_merge_names_its_ingredients_or_takes_stage2_checkpoints():
    from embedforge.config import ConfigError, parse_config
    from embedforge.merge import MergeConfig
    from embedforge.pipeline.config import PipelineConfig

    stage2 = {"stage": 2, "model": {"kind": "embedder", "base": "all-MiniLM-L6-v2"}, "data": {"datasets": [{"name": "a", "path": "x.jsonl"}]},
              "optim": {"steps": 4}, "run": {"merge_steps": [2, 4]}}
    default = parse_config({"run_dir": "r", "stage2": stage2}, PipelineConfig, "p.yaml")
    assert isinstance(default.merge, MergeConfig) and default.merge.checkpoints is None and default.merge.output is None
    named = parse_config({"run_dir": "r", "stage2": {**stage2, "run": {}}, "merge": {"checkpoints": ["@stage2", "all-MiniLM-L6-v2"], "weights": [0.8, 0.2]}}, PipelineConfig, "p.yaml")
    assert named.merge.checkpoints == ["@stage2", "all-MiniLM-L6-v2"]
    with pytest.raises(ConfigError, match=r"merge: .*got 1 weights for 2 checkpoints"):
        parse_config({"run_dir": "r", "stage2": stage2, "merge": {"checkpoints": ["@stage2", "@stage1"], "weights": [1.0]}}, PipelineConfig, "p.yaml")
    with pytest.raises(ConfigError, match="one weight per stage2.run.merge_steps entry"):
        parse_config({"run_dir": "r", "stage2": stage2, "merge": {"weights": [1.0]}}, PipelineConfig, "p.yaml")
    with pytest.raises(ConfigError, match="merge_steps must name at least two steps"):
        parse_config({"run_dir": "r", "stage2": {**stage2, "run": {}}}, PipelineConfig, "p.yaml")


def test_stage_functions_take_section_folder_upstream_and_never_import_the_runner():
    """``actions`` is imported by ``run``, never the other way round: no import cycle."""
    import ast
    import inspect

    from embedforge.pipeline import actions

    tree = ast.parse(inspect.getsource(actions))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name.startswith("embedforge.pipeline.run") for name in imported), imported
    for name in ("weak", "synthesize", "filter", "mine", "train", "merge", "evaluate"):
        assert list(inspect.signature(getattr(actions, name)).parameters) == ["section", "folder", "upstream"], name


def test_evaluation_compares_the_models_that_trained_and_the_merge(tmp_path):
    from embedforge.pipeline.actions import models_to_compare
    from embedforge.pipeline.stages import StageResult

    def result(name: str, **summary) -> StageResult:
        return StageResult(name, "k", tmp_path / name, summary, skipped=False)

    upstream = {
        "stage1": result("stage1", output="/m/base", base="/m/base", trained=False),
        "stage2": result("stage2", output="/m/s2", base="/m/base", trained=True),
        "stage2_from_base": result("stage2_from_base", output="/m/s2b", base="/m/base", trained=True),
        "merge": result("merge", output="/m/merged"),
    }
    assert models_to_compare(upstream) == {"base": "/m/base", "stage2": "/m/s2", "stage2_from_base": "/m/s2b", "merged": "/m/merged"}


def test_pipeline_merge_takes_stage2_checkpoints_into_its_own_folder(tmp_path, tiny_embedder_dir):
    """Without ``checkpoints`` and ``output``, the merge takes stage 2's kept checkpoints, oldest first, into ``model/``."""
    import numpy as np

    from embedforge.merge import MergeConfig
    from embedforge.models.embedder import Embedder
    from embedforge.models.qwen3 import build_embedder
    from embedforge.pipeline.actions import merge
    from embedforge.pipeline.stages import StageResult

    other = build_embedder("tiny", max_length=64, seed=1).save(tmp_path / "other")
    kept = {"10": str(other), "4": str(tiny_embedder_dir)}
    stage2 = StageResult("stage2", "k", tmp_path, {"merge_candidates": kept}, skipped=False)
    folder = tmp_path / "merge-key"
    folder.mkdir()
    summary = merge(MergeConfig(weights=[1.0, 0.0]), folder, {"stage2": stage2})
    assert summary == {"output": str(folder / "model"), "checkpoints": [str(tiny_embedder_dir), str(other)], "weights": [1.0, 0.0], "method": "slerp"}
    merged, first = (Embedder.load(path, device="cpu").encode(["hello"]) for path in (folder / "model", tiny_embedder_dir))
    np.testing.assert_allclose(merged, first, atol=1e-6)


def test_stage2_variants_run_as_named_stages_and_the_old_key_is_refused():
    from embedforge.config import ConfigError, parse_config
    from embedforge.pipeline.config import PipelineConfig

    stage2 = {"stage": 2, "model": {"kind": "embedder", "base": "@stage1"}, "data": {"datasets": [{"name": "a", "path": "x.jsonl"}]}, "optim": {"steps": 4}}
    variants = {"lr5": {**stage2, "optim": {"steps": 4, "lr": 5e-5}}, "from_base": {**stage2, "model": {"kind": "embedder", "base": "all-MiniLM-L6-v2"}}}
    config = parse_config({"run_dir": "r", "stage2": stage2, "stage2_variants": variants, "merge": {"checkpoints": ["@stage2", "@stage2_lr5"]}}, PipelineConfig, "p.yaml")
    assert list(config.variant_stages) == ["stage2_lr5", "stage2_from_base"]
    assert config.variant_stages["stage2_lr5"].run.name == "stage2_lr5" and config.variant_stages["stage2_lr5"].optim.lr == 5e-5
    with pytest.raises(ConfigError, match=r"stage2_from_base: is now one of the stage-2 variants: write stage2_variants: \{from_base"):
        parse_config({"run_dir": "r", "stage2": stage2, "stage2_from_base": stage2, "merge": {"checkpoints": ["@stage2", "@stage1"]}}, PipelineConfig, "p.yaml")
    with pytest.raises(ConfigError, match="'lr-5' must be a name of letters"):
        parse_config({"run_dir": "r", "stage2": stage2, "stage2_variants": {"lr-5": stage2}, "merge": {"checkpoints": ["@stage2", "@stage1"]}}, PipelineConfig, "p.yaml")
    with pytest.raises(ConfigError, match="stage2_variants.weak must be a stage-2 embedder config"):
        parse_config({"run_dir": "r", "stage2": stage2, "stage2_variants": {"weak": {**stage2, "stage": 1}}, "merge": {"checkpoints": ["@stage2", "@stage1"]}}, PipelineConfig, "p.yaml")
