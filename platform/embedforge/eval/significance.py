"""How sure a comparison of two models on one query set is: the paired bootstrap.

Two models scored on the same queries differ query by query. Resampling the queries with
replacement and re-averaging the per-query differences gives the spread of the mean
difference that another query sample of the same size would show (Efron and Tibshirani,
*An Introduction to the Bootstrap*, 1993; the percentile interval). An interval that holds 0
means this query set cannot tell the two models apart, whichever mean is higher. With the
155 SciFact dev queries the benchmarks use, differences of a few thousandths of nDCG@10 are
of that kind.

STS tasks score a model by the Spearman correlation of its similarities with the gold ones,
which is not a mean over pairs; :func:`paired_bootstrap_spearman` resamples the pairs and
recomputes the correlation instead.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

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
    check_level(level, "paired_bootstrap")
    ids = sorted(a)
    deltas = np.array([a[query_id] - b[query_id] for query_id in ids], dtype=np.float64)
    samples = np.random.default_rng(seed).integers(0, len(deltas), size=(resamples, len(deltas)))
    low, high = percentile_interval(deltas[samples].mean(axis=1), level)
    return Difference(float(deltas.mean()), float(low), float(high), int((deltas > 0).sum()), int((deltas < 0).sum()), len(deltas))


class Interval(NamedTuple):
    """The difference of two models' scores on the same items, and its bootstrap interval."""

    difference: float
    low: float
    high: float


def paired_bootstrap_spearman(
    gold: Mapping[str, Sequence[float]],
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    *,
    resamples: int = 2_000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Spearman of ``a`` minus Spearman of ``b`` against ``gold``, averaged over subsets, and its interval.

    Each key (an mteb ``split/subset``) maps to its pairs' scores, in one order for the gold
    similarities and both models' predicted ones. A resample draws every subset's pairs with
    replacement, the same pairs for both models, and recomputes each subset's correlation
    (average ranks for ties) before averaging over subsets, as mteb's main score does. Fewer
    resamples than :func:`paired_bootstrap`: each one ranks every subset anew.
    """
    if not gold or set(gold) != set(a) or set(gold) != set(b):
        raise ValueError(f"paired_bootstrap_spearman: subsets differ: gold {sorted(gold)}, a {sorted(a)}, b {sorted(b)}")
    check_level(level, "paired_bootstrap_spearman")
    rng = np.random.default_rng(seed)
    full, resampled = [], []
    for key in sorted(gold):
        y, x_a, x_b = (np.asarray(values[key], dtype=np.float64) for values in (gold, a, b))
        if not len(y) == len(x_a) == len(x_b) > 1:
            raise ValueError(f"paired_bootstrap_spearman: {key} needs the same two or more pairs on every side")
        full.append(row_spearman(x_a[None], y[None])[0] - row_spearman(x_b[None], y[None])[0])
        picks = rng.integers(0, len(y), size=(resamples, len(y)))
        resampled.append(row_spearman(x_a[picks], y[picks]) - row_spearman(x_b[picks], y[picks]))
    low, high = percentile_interval(np.mean(resampled, axis=0), level)
    return Interval(float(np.mean(full)), low, high)


def check_level(level: float, caller: str) -> None:
    if not 0 < level < 1:
        raise ValueError(f"{caller}: level must be between 0 and 1, not {level}")


def percentile_interval(statistics: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of resampled statistics (resamples whose statistic is undefined, NaN, left out)."""
    low, high = np.nanquantile(statistics, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``x`` with the same row of ``y``: ``(R, n)`` to ``(R,)``; NaN for a constant row."""
    from scipy.stats import rankdata

    rank_x, rank_y = rankdata(x, axis=1), rankdata(y, axis=1)
    rank_x -= rank_x.mean(axis=1, keepdims=True)
    rank_y -= rank_y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_x * rank_y).sum(axis=1) / np.sqrt((rank_x**2).sum(axis=1) * (rank_y**2).sum(axis=1))
