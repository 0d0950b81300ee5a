import subprocess
import sys
from pathlib import Path

import pytest

from embedforge.config import ConfigError, ConfigModel, DataPath, load_config
from embedforge.paths import shared_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


class Inner(ConfigModel):
    size: int = 1


class Example(ConfigModel):
    name: str
    inner: Inner = Inner()
    data: DataPath | None = None


def test_yaml_loads_and_expands_the_data_folder(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("name: x\ninner: {size: 3}\ndata: ${EMBEDFORGE_DATA}/retrieval\n")
    config = load_config(path, Example)
    assert config.inner.size == 3 and config.data == shared_data_dir() / "retrieval"


def test_bad_value_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ninner: {size: many}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: inner.size: .*integer.*'many'"):
        load_config(path, Example)


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("name: x\ninnr: {}\n")
    with pytest.raises(ConfigError, match="typo.yaml: innr: Extra inputs are not permitted"):
        load_config(path, Example)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("name: x\ninner: [1, 2\nmore: 3\n")
    with pytest.raises(ConfigError, match=r"syntax.yaml:\d+: invalid YAML"):
        load_config(path, Example)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml", Example)


def test_stdlib_platform_module_is_not_shadowed_from_the_repo_root():
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    result = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.python_version())"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip().count(".") == 2
