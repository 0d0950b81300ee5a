"""Every synthesis YAML in jobs/configs loads into the config class of the command it names."""

from pathlib import Path

import pytest

from embedforge.cli import COMMANDS, build_parser
from embedforge.config import ConfigError, load_config, parse_config
from embedforge.synthesis.filter import FilterConfig
from embedforge.synthesis.synthesize import SynthesizeConfig
from embedforge.synthesis.mine import MineConfig
from embedforge.synthesis.weak import WeakConfig

CONFIGS = Path(__file__).resolve().parents[1] / "jobs" / "configs"
CLASSES = {"synthesize": SynthesizeConfig, "filter": FilterConfig, "mine": MineConfig, "weak": WeakConfig}


def command_of(path: Path) -> str | None:
    """The embedforge subcommand named by the ``# Run:`` header, if it is one."""
    header = path.read_text().splitlines()[0]
    assert header.startswith("# Run: "), f"{path}: the first line must name the command that runs it"
    return header.split()[3] if header.startswith("# Run: embedforge ") else None


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if command_of(p) in CLASSES), ids=lambda p: p.name)
def test_synthesis_yaml_loads(path):
    config = load_config(path, CLASSES[command_of(path)])
    assert "${EMBEDFORGE_DATA}" not in str(config.model_dump())


def test_commands_are_registered():
    assert {"synthesize", "filter", "mine"} <= set(COMMANDS)
    help_text = build_parser().format_help()
    assert all(name in help_text for name in ("synthesize", "filter", "mine"))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="plan: .*unknown task type"):
        parse_config({"output_dir": "x", "corpus": {"paths": ["c.jsonl"]}, "plan": {"tasks": {"ranking": 1.0}}}, SynthesizeConfig, "s.yaml")
    with pytest.raises(ConfigError, match="exactly one of pairs_dir and labelled"):
        parse_config({"output_dir": "x", "corpus": {"paths": ["c.jsonl"]}}, MineConfig, "m.yaml")
    with pytest.raises(ConfigError, match="generator.engine"):
        parse_config({"output_dir": "x", "corpus": {"paths": ["c.jsonl"]}, "generator": {"engine": "tgi"}}, SynthesizeConfig, "s.yaml")
