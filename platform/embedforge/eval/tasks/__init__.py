"""Evaluation tasks: offline mteb custom tasks over ``../shared/data``, and mteb's own by name.

Offline task names are lower-case with dashes (``scifact-dev``), so they never collide with
mteb's CamelCase names (``SciFact``). Any other name is looked up in mteb; running such a
task needs its dataset from the Hugging Face hub, and :func:`build_task` says so clearly
when the hub cannot be reached.
"""

from __future__ import annotations

from typing import Callable

from mteb.abstasks import AbsTask

from embedforge.eval.tasks.banking77 import Banking77
from embedforge.eval.tasks.cranfield import Cranfield
from embedforge.eval.tasks.limits import TaskLimits
from embedforge.eval.tasks.scifact import SciFactDev
from embedforge.eval.tasks.sts import STSBenchmarkDev, STSbMultiMTDev
from embedforge.eval.tasks.xquad import XQuADCrossLingualRetrieval, XQuADRetrieval

OFFLINE_TASKS: dict[str, Callable[[TaskLimits], AbsTask]] = {
    task.metadata.name: task
    for task in (SciFactDev, Cranfield, STSBenchmarkDev, STSbMultiMTDev, Banking77, XQuADRetrieval, XQuADCrossLingualRetrieval)
}


class TaskUnavailableError(ValueError):
    """A task name that is unknown, or whose data this machine cannot load."""


def mteb_task(name: str) -> AbsTask:
    """mteb's task of that name, its data not loaded; an unknown name is a :class:`TaskUnavailableError`."""
    import mteb

    try:
        return mteb.get_task(name)
    except (KeyError, ValueError) as error:
        raise TaskUnavailableError(
            f"unknown task {name!r}: not an offline task ({', '.join(OFFLINE_TASKS)}) nor an mteb task ({error})"
        ) from None


def check_task_names(names: list[str]) -> list[str]:
    """One problem per unknown task name, without loading any data (quick checks before a run)."""
    problems = []
    for name in names:
        if name not in OFFLINE_TASKS:
            try:
                mteb_task(name)
            except TaskUnavailableError as error:
                problems.append(str(error))
    return problems


def build_task(name: str, limits: TaskLimits | None = None) -> AbsTask:
    """An offline task with its limits, else mteb's task of that name, its data loaded.

    Limits apply to offline tasks only; mteb's own tasks run on their full data.
    """
    limits = limits or TaskLimits()
    if name in OFFLINE_TASKS:
        return OFFLINE_TASKS[name](limits)
    task = mteb_task(name)
    try:
        task.load_data()
    except Exception as error:  # datasets raises many types for "no network"; all mean the same here
        raise TaskUnavailableError(
            f"mteb task {name!r} needs its dataset {task.metadata.dataset.get('path')!r} from the Hugging Face hub, "
            f"which could not be loaded ({type(error).__name__}: {error}). Offline tasks: {', '.join(OFFLINE_TASKS)}"
        ) from None
    return task


__all__ = ["OFFLINE_TASKS", "TaskLimits", "TaskUnavailableError", "build_task", "check_task_names", "mteb_task"]
