"""Every YAML in the repository parses, and every job config validates against the command its header names."""

import re
from pathlib import Path

import pytest
import yaml

from embedforge.cli import COMMANDS
from embedforge.config import load_config
from embedforge.eval.settings import EvaluateConfig
from embedforge.merge import MergeConfig
from embedforge.pipeline.config import PipelineConfig
from embedforge.synthesis.filter import FilterConfig
from embedforge.synthesis.synthesize import SynthesizeConfig
from embedforge.synthesis.mine import MineConfig
from embedforge.synthesis.weak import WeakConfig
from embedforge.training.config import load_stage_config

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_CONFIGS = sorted((REPO_ROOT / "jobs" / "configs").glob("*.yaml"))
ALL_YAML = sorted(path for pattern in ("jobs/**/*.yaml", "cluster/**/*.yaml") for path in REPO_ROOT.glob(pattern))

LOADERS = {
    "synthesize": lambda path: load_config(path, SynthesizeConfig),
    "filter": lambda path: load_config(path, FilterConfig),
    "mine": lambda path: load_config(path, MineConfig),
    "weak": lambda path: load_config(path, WeakConfig),
    "train": load_stage_config,
    "merge": lambda path: load_config(path, MergeConfig),
    "run": lambda path: load_config(path, PipelineConfig),
    "evaluate": lambda path: load_config(path, EvaluateConfig),
}


HEADER = re.compile(r"# Run: embedforge (?P<command>[a-z-]+) (?P<config_flag>--config )?(?P<path>\S+)(\s|$)")


def run_command(path: Path) -> str:
    """The embedforge subcommand that the ``# Run:`` header names; the header must run this very file.

    ``embedforge run`` takes the pipeline config as its argument, every other command as ``--config``.
    """
    header = path.read_text().splitlines()[0]
    match = HEADER.match(header)
    assert match, f"{path}: the first line must be '# Run: embedforge <command> --config {path.relative_to(REPO_ROOT)}'"
    command = match["command"]
    assert command in COMMANDS, f"{path}: {command!r} is not an embedforge command"
    assert (match["config_flag"] is None) == (command == "run"), f"{path}: the config is {'the argument of' if command == 'run' else '--config of'} embedforge {command}"
    assert match["path"] == str(path.relative_to(REPO_ROOT)), f"{path}: the header runs {match['path']}, not this file"
    return command


def test_there_are_configs_to_check():
    assert len(JOB_CONFIGS) >= 10 and any(path.parent.name == "cluster" for path in ALL_YAML)


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_yaml_parses(path):
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document is not None]
    assert documents and all(isinstance(document, dict) for document in documents)


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=lambda path: path.name)
def test_job_config_validates_against_the_command_it_names(path):
    command = run_command(path)
    assert command in LOADERS, f"{path}: no loader for command {command!r}"
    config = LOADERS[command](path)
    assert "${EMBEDFORGE_DATA}" not in str(config.model_dump())
