"""The one typed config system: pydantic models loaded from YAML, validated at the edge.

Every stage defines its settings as a :class:`ConfigModel`; :func:`load_config` reads a
YAML file into one and turns any problem into a :class:`ConfigError` that names the file,
the line (for YAML syntax) or the dotted field path (for bad values). Components never see
a config object: builders turn configs into plain keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from embedforge.paths import expand_path

ConfigT = TypeVar("ConfigT", bound="ConfigModel")


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says where and why."""


class ConfigModel(BaseModel):
    """Base for all configs: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


DataPath = Annotated[Path, BeforeValidator(lambda value: expand_path(value) if value is not None else value)]
"""A path field that expands ``${EMBEDFORGE_DATA}``, environment variables and ``~``."""


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: reason (got value)``."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "<root>"
        got = problem.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{source}: {field}: {problem['msg']}{shown}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], config_cls: type[ConfigT], source: str = "<config>") -> ConfigT:
    """Validate a plain mapping into ``config_cls``, raising :class:`ConfigError` on failure."""
    try:
        return config_cls.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_config(path: str | Path, config_cls: type[ConfigT]) -> ConfigT:
    """Read a YAML file into ``config_cls``; errors name the file and the line or field."""
    return parse_config(read_yaml_mapping(path), config_cls, source=str(path))


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; a missing file or bad YAML names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data
