"""Checks of a config's inputs that run before any model loads or Ray starts.

A config names input files and folders (``DataPath`` fields) and models (a training
``model.base``, a teacher's ``model``, a merge's ``checkpoints``). :func:`input_problems`
walks a config and returns one line per input that does not exist, so a command can refuse
in a second instead of after starting Ray. Output fields and ``@stage`` references (made during a pipeline run)
are not inputs and are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

OUTPUT_FIELDS = frozenset({"output_dir", "output", "storage_path"})
"""Fields that name what a stage writes, not what it reads."""


def model_problem(reference: str) -> str | None:
    """Why ``reference`` names no model folder or packaged model, else ``None`` (nothing is loaded or built)."""
    from embedforge.models.registry import BUILT_MODELS, resolve_model

    if reference in BUILT_MODELS:
        return None
    try:
        resolve_model(reference)
    except FileNotFoundError as error:
        return str(error).split(" (and ")[0]  # the registry's list of every model name is too long for a check
    return None


def _model_fields(config: BaseModel) -> tuple[str, ...]:
    """The fields of ``config`` that name a model (or a list of models) to load."""
    from embedforge.merge import MergeConfig
    from embedforge.synthesis.teacher import TeacherConfig
    from embedforge.training.config import ModelSection

    if isinstance(config, ModelSection):
        return ("base",)
    if isinstance(config, TeacherConfig):
        return ("model",)
    if isinstance(config, MergeConfig):
        return ("checkpoints",)
    return ()


def is_reference(value: Any) -> bool:
    """A pipeline ``@stage`` reference (a string or a path spelled ``@name``)."""
    return str(value).startswith("@")


def input_problems(config: BaseModel, prefix: str = "") -> list[str]:
    """``field.path: reason`` for every missing input path or unknown model in ``config``, nested."""
    problems = []
    model_fields = _model_fields(config)
    for name, value in config:
        where = f"{prefix}{name}"
        if name in OUTPUT_FIELDS or value is None:
            continue
        if name in model_fields:
            problems += _model_problems(value, where)
        else:
            problems += _value_problems(value, where)
    return problems


def _model_problems(value: Any, where: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [problem for index, item in enumerate(value) for problem in _model_problems(item, f"{where}.{index}")]
    problem = None if is_reference(value) else model_problem(str(value))
    return [f"{where}: {problem}"] if problem else []


def _value_problems(value: Any, where: str) -> list[str]:
    if isinstance(value, BaseModel):
        return input_problems(value, f"{where}.")
    if isinstance(value, Path):
        return [] if is_reference(value) or value.exists() else [f"{where}: {value} does not exist"]
    if isinstance(value, (list, tuple)):
        return [problem for index, item in enumerate(value) for problem in _value_problems(item, f"{where}.{index}")]
    return []
