"""``check_pipeline`` and ``embedforge run``: a bad pipeline config fails before anything runs."""

import copy
import time
from pathlib import Path

import pytest
import ray
import yaml

from embedforge.cli import main
from embedforge.config import parse_config
from embedforge.pipeline.checks import check_pipeline, ray_settings_not_applied
from embedforge.pipeline.config import PipelineConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(shared_data) -> dict:
    """The raw mapping of ``jobs/configs/pipeline_tiny.yaml``."""
    return yaml.safe_load((REPO_ROOT / "jobs/configs/pipeline_tiny.yaml").read_text())


def problems_of(data: dict, tmp_path: Path) -> list[str]:
    return check_pipeline(parse_config({**data, "run_dir": str(tmp_path / "run")}, PipelineConfig))


def test_shipped_pipeline_configs_have_no_problems(tiny, tmp_path):
    assert problems_of(tiny, tmp_path) == []
    quickstart = yaml.safe_load((REPO_ROOT / "jobs/configs/quickstart.yaml").read_text())
    assert problems_of(quickstart, tmp_path) == []


def stage_names(data: dict) -> list[str]:
    return list(parse_config({**data, "run_dir": "r"}, PipelineConfig).stage_sections())


def test_sections_are_stages_in_run_order_with_the_variants_after_stage2(tiny):
    variant = {**tiny["stage2"], "optim": {**tiny["stage2"]["optim"], "lr": 5e-5}}
    names = stage_names({**tiny, "stage2_variants": {"lr5": variant}})
    assert names[:5] == ["weak", "synthesize", "filter", "mine_synthetic", "mine_labelled"]
    assert names.index("stage1") < names.index("stage2") < names.index("stage2_lr5") < names.index("merge") < names.index("reranker")
    assert "run_dir" not in names and "ray" not in names and "stage2_variants" not in names


def test_bad_references_are_named_with_their_field(tiny, tmp_path):
    data = copy.deepcopy(tiny)
    data["stage2"]["model"]["base"] = "@stgae1"
    data["filter"]["input_dir"] = "@stage1"
    data["reranker"]["data"]["datasets"][0]["path"] = "@reranker"
    problems = problems_of(data, tmp_path)
    assert problems == [
        "filter.input_dir: reference '@stage1' names a stage that runs later (stages run in the order "
        + ", ".join(stage_names(tiny))
        + ")",
        "stage2.model.base: reference '@stgae1' names no stage; did you mean '@stage1'?",
        "reranker.data.datasets.0.path: reference '@reranker' is the stage itself; use '@out' for its own folder",
    ]


def test_a_reference_to_a_stage_not_configured(tiny, tmp_path):
    data = copy.deepcopy(tiny)
    del data["stage1"]
    assert problems_of(data, tmp_path) == ["stage2.model.base: reference '@stage1' names a stage that is not configured in this file"]


def test_task_names_input_paths_and_models(tiny, tmp_path):
    data = copy.deepcopy(tiny)
    data["evaluate"]["tasks"] = ["scifact-dev", "scifact-dve"]
    data["mine_labelled"]["labelled"]["qrels"] = str(tmp_path / "no-qrels.tsv")
    data["reranker"]["model"]["base"] = str(tmp_path / "no-model")
    problems = problems_of(data, tmp_path)
    assert len(problems) == 3
    assert problems[0] == f"mine_labelled.labelled.qrels: {tmp_path / 'no-qrels.tsv'} does not exist"
    assert problems[1] == f"reranker.model.base: model folder not found: {tmp_path / 'no-model'}"
    assert problems[2].startswith("evaluate.tasks: unknown task 'scifact-dve': not an offline task")


def test_a_run_dir_that_cannot_be_created(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = parse_config({**tiny, "run_dir": str(blocker / "run")}, PipelineConfig)
    assert check_pipeline(config) == [f"run_dir: {blocker / 'run'}: cannot be created, {blocker} is a file, not a folder"]


def test_embedforge_run_reports_every_problem_before_ray_starts(tiny, tmp_path, capsys):
    data = copy.deepcopy(tiny)
    data["run_dir"] = str(tmp_path / "run")
    data["stage2"]["model"]["base"] = "@stgae1"
    data["evaluate"]["tasks"] = ["scifact-dve"]
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(data))
    started = time.perf_counter()
    assert main(["run", str(config)]) == 2
    assert time.perf_counter() - started < 30 and not ray.is_initialized()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"embedforge run: error: {config}: ") for line in lines)
    assert "stage2.model.base: reference '@stgae1'" in lines[0] and "evaluate.tasks: unknown task 'scifact-dve'" in lines[1]
    assert not (tmp_path / "run").exists()


def test_stage_ray_settings_that_cannot_apply_get_one_line_per_stage(tiny, tmp_path):
    data = copy.deepcopy(tiny)
    assert data["ray"] == {"num_cpus": 4}
    data["synthesize"]["ray"] = {"num_cpus": 4}  # the same as the run's: applies
    data["filter"]["ray"] = {"num_cpus": 8}
    data["stage2"]["ray"] = {"address": "auto", "num_cpus": 2}
    config = parse_config({**data, "run_dir": str(tmp_path / "run")}, PipelineConfig)
    assert ray_settings_not_applied(config) == [
        "[filter] ray.num_cpus=8 does not apply: this run's Ray is already started (top-level ray.num_cpus=4)",
        "[stage2] ray.address=auto, ray.num_cpus=2 do not apply: this run's Ray is already started (top-level ray.address=None, ray.num_cpus=4)",
    ]
    assert ray_settings_not_applied(parse_config({**tiny, "run_dir": str(tmp_path / "run")}, PipelineConfig)) == []


@pytest.mark.parametrize(
    "old,new,hint",
    [
        ("local_ray_cpus", "ray", "local_ray_cpus: replaced by the top-level ray section; write ray: {num_cpus: N}"),
        ("evaluation", "evaluate", "evaluation: renamed evaluate, the stage's name (as in `embedforge evaluate`)"),
    ],
)
def test_an_old_key_names_what_replaced_it(tiny, tmp_path, capsys, old, new, hint):
    data = {key: value for key, value in tiny.items() if key != new}
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({**data, "run_dir": str(tmp_path / "run"), old: tiny.get(new, 4)}))
    assert main(["run", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"embedforge run: error: {config}: <root>: Value error, {hint}"]
