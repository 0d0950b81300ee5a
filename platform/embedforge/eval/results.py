"""mteb ``TaskResult`` objects as flat ``{metric: value}`` dicts, mteb's metric names kept.

A task with several subsets (languages, language pairs) is reported as the mean of each
metric over its subsets, as mteb's own ``main_score`` averaging does; the per-subset values
are kept separately for ``results_by_subset.json``. Non-numeric entries (per-experiment
lists, language tags) are left out; non-finite values (mteb's ``nauc_*`` on tiny sets)
become ``None`` so the JSON stays valid.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

Metrics = dict[str, float | None]


def scalar_metrics(scores: Mapping[str, Any]) -> Metrics:
    """The numeric scalars of one subset's scores; NaN and infinities become ``None``."""
    metrics: Metrics = {}
    for name, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        number = float(value)
        metrics[name] = number if math.isfinite(number) else None
    return metrics


def subset_metrics(task_result: Any) -> dict[str, Metrics]:
    """``{"split/subset": metrics}`` for every evaluated split and subset of a task."""
    return {
        f"{split}/{scores['hf_subset']}": scalar_metrics(scores)
        for split, subsets in task_result.scores.items()
        for scores in subsets
    }


def mean_metrics(per_subset: Mapping[str, Metrics]) -> Metrics:
    """Each metric averaged over the subsets where it is finite (``None`` where it never is)."""
    names = list(dict.fromkeys(name for metrics in per_subset.values() for name in metrics))
    means: Metrics = {}
    for name in names:
        values = [metrics[name] for metrics in per_subset.values() if metrics.get(name) is not None]
        means[name] = sum(values) / len(values) if values else None
    return means
