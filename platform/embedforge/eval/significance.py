"""How sure a comparison of two models on one query set is: the paired bootstrap.

Two models scored on the same queries differ query by query. Resampling the queries with
replacement and re-averaging the per-query differences gives the spread of the mean
difference that another query sample of the same size would show (Efron and Tibshirani,
*An Introduction to the Bootstrap*, 1993; the percentile interval). An interval that holds 0
means this query set cannot tell the two models apart, whichever mean is higher. With the
155 SciFact dev queries the benchmarks use, differences of a few thousandths of nDCG@10 are
of that kind.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np


class Difference(NamedTuple):
    """The mean per-query difference ``a - b``, its bootstrap interval, and its query counts."""

    mean: float
    low: float
    high: float
    better: int
    worse: int
    queries: int


def paired_bootstrap(
    a: Mapping[str, float], b: Mapping[str, float], *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> Difference:
    """The mean of ``a[q] - b[q]`` over the queries, and its ``level`` percentile bootstrap interval.

    ``a`` and ``b`` map the same query ids to a per-query score (``eval.metrics.query_ndcg``);
    a query scored by only one of them is an error, not dropped. ``better`` and ``worse``
    count the queries where ``a`` scores above or below ``b``.
    """
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))
        raise ValueError(f"paired_bootstrap: {len(missing)} queries are scored by one model only, e.g. {missing[:3]}")
    if not a:
        raise ValueError("paired_bootstrap: no queries")
    if not 0 < level < 1:
        raise ValueError(f"paired_bootstrap: level must be between 0 and 1, not {level}")
    ids = sorted(a)
    deltas = np.array([a[query_id] - b[query_id] for query_id in ids], dtype=np.float64)
    samples = np.random.default_rng(seed).integers(0, len(deltas), size=(resamples, len(deltas)))
    means = deltas[samples].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Difference(float(deltas.mean()), float(low), float(high), int((deltas > 0).sum()), int((deltas < 0).sum()), len(deltas))
