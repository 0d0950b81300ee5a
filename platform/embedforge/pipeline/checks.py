"""Checks of a whole pipeline config before anything runs: one line per problem.

:func:`check_pipeline` finds in a second what would otherwise fail hours into a run:

- stage references (``@stage``) that name no stage, a stage that is not configured, the
  stage itself, or a stage that runs later (stages run in the order of
  ``PipelineConfig.stage_sections``, so these checks cover any section added there);
- evaluation task names that are neither offline tasks nor mteb tasks;
- input files, folders and models that must exist before the run (those a stage
  produces are references, and are checked as references);
- a ``run_dir`` that cannot be written.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Iterator

from embedforge.pipeline.references import OWN_FOLDER
from embedforge.session import RayConfig, settings_not_applied

if TYPE_CHECKING:
    from embedforge.pipeline.config import PipelineConfig


def references_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(field path, stage name)`` for every ``@stage`` reference in a config dump."""
    if isinstance(value, str):
        if value.startswith("@") and value != OWN_FOLDER:
            yield path, value[1:]
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references_in(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from references_in(item, f"{path}.{index}")


def reference_problems(config: "PipelineConfig") -> list[str]:
    """One line per reference that would not resolve when its stage runs."""
    sections = config.stage_sections()
    names = list(sections)
    problems = []
    for position, name in enumerate(names):
        section = sections[name]
        if section is None:
            continue
        for path, target in references_in(section.model_dump(mode="json"), name):
            reference = f"{path}: reference '@{target}'"
            if target == name:
                problems.append(f"{reference} is the stage itself; use '{OWN_FOLDER}' for its own folder")
            elif target not in names:
                close = difflib.get_close_matches(target, names, n=1)
                hint = f"; did you mean '@{close[0]}'?" if close else f" (stages: {', '.join(names)})"
                problems.append(f"{reference} names no stage{hint}")
            elif names.index(target) > position:
                problems.append(f"{reference} names a stage that runs later (stages run in the order {', '.join(names)})")
            elif sections[target] is None:
                problems.append(f"{reference} names a stage that is not configured in this file")
    return problems


def ray_settings_not_applied(config: "PipelineConfig") -> list[str]:
    """One line per stage section whose own ``ray`` settings differ from the run's ``ray`` session.

    The run starts Ray once, from the top-level ``ray`` section, before the first stage; a
    section's ``ray.address`` or ``ray.num_cpus`` cannot change a started Ray, so
    ``embedforge run`` warns instead of ignoring them silently.
    """
    started: RayConfig = config.ray
    lines = []
    for name, section in config.stage_sections().items():
        if section is None or "ray" not in section.model_fields_set:
            continue
        ignored = settings_not_applied(section.ray, started)
        if ignored:
            wanted = ", ".join(f"ray.{field}={getattr(section.ray, field)}" for field in ignored)
            running = ", ".join(f"ray.{field}={getattr(started, field)}" for field in ignored)
            verb = "does" if len(ignored) == 1 else "do"
            lines.append(f"[{name}] {wanted} {verb} not apply: this run's Ray is already started (top-level {running})")
    return lines


def check_pipeline(config: "PipelineConfig") -> list[str]:
    """Every problem of a pipeline config that can be found without running a stage, one line each."""
    from embedforge.eval.settings import EvaluateConfig
    from embedforge.eval.tasks import check_task_names
    from embedforge.inputs import input_problems
    from embedforge.outputs import check_writable

    problems = reference_problems(config)
    for name, section in config.stage_sections().items():
        if section is None:
            continue
        if isinstance(section, EvaluateConfig):
            problems += [f"{name}.tasks: {problem}" for problem in check_task_names(section.tasks)]
        problems += input_problems(section, f"{name}.")
    try:
        check_writable(config.run_dir)
    except OSError as error:
        problems.append(f"run_dir: {error}")
    return problems
