"""The stats JSON and the short markdown report (counts table, teacher-score histogram PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import numpy as np


class ScoreBins:
    """Teacher scores counted in 4,000 fixed bins over [-1, 1]: a report over any number of rows
    in constant memory. Count, mean, min and max are exact; percentiles are bin centres
    (within 0.00025 of the exact value)."""

    EDGES = np.linspace(-1.0, 1.0, 4001)

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.EDGES) - 1, dtype=np.int64)
        self.count, self.total, self.low, self.high = 0, 0.0, float("inf"), float("-inf")

    def add(self, scores: np.ndarray) -> None:
        values = np.asarray(scores, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        self.counts += np.histogram(np.clip(values, -1.0, 1.0), bins=self.EDGES)[0]
        self.count += int(values.size)
        self.total += float(values.sum())
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def percentile(self, q: float) -> float:
        centres = (self.EDGES[:-1] + self.EDGES[1:]) / 2
        index = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.count, side="left"))
        return float(min(max(centres[min(index, len(centres) - 1)], self.low), self.high))


Scores = Union[Sequence[float], ScoreBins]


def score_summary(scores: Scores) -> dict:
    if isinstance(scores, ScoreBins):
        if scores.count == 0:
            return {"count": 0}
        parts = {"mean": scores.total / scores.count, "min": scores.low, "p10": scores.percentile(10), "p50": scores.percentile(50), "p90": scores.percentile(90), "max": scores.high}
        return {"count": scores.count, **{name: round(value, 4) for name, value in parts.items()}}
    values = np.asarray([s for s in scores if s is not None and np.isfinite(s)], dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    return {
        "count": int(values.size),
        "mean": round(float(values.mean()), 4),
        "min": round(float(values.min()), 4),
        "p10": round(float(np.percentile(values, 10)), 4),
        "p50": round(float(np.percentile(values, 50)), 4),
        "p90": round(float(np.percentile(values, 90)), 4),
        "max": round(float(values.max()), 4),
    }


def write_histogram(path: Path, scores: Scores, title: str, threshold: float | None = None) -> Path:
    """A PNG histogram of teacher scores (an empty plot says so when there are none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    if isinstance(scores, ScoreBins):
        values, weights = (scores.EDGES[:-1] + scores.EDGES[1:]) / 2, scores.counts
        present = weights > 0
        values, weights = values[present].tolist(), weights[present]
    else:
        values, weights = [s for s in scores if s is not None and np.isfinite(s)], None
    if values:
        axes.hist(values, bins=40, range=(min(-0.2, min(values)), 1.0), weights=weights, color="#4c72b0")
    else:
        axes.text(0.5, 0.5, "no scored pairs", ha="center", va="center", transform=axes.transAxes)
    if threshold is not None:
        axes.axvline(threshold, color="#c44e52", linestyle="--", label=f"keep > {threshold}")
        axes.legend(loc="upper left")
    axes.set_xlabel("teacher cosine(query, positive)")
    axes.set_ylabel("pairs")
    axes.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def counts_table(counts: dict[str, dict[str, int]]) -> str:
    lines = ["| stage | count | value |", "|---|---|---|"]
    for stage, values in counts.items():
        for name, value in values.items():
            lines.append(f"| {stage} | {name} | {value} |")
    return "\n".join(lines)


def write_stage_report(output_dir: Path, stats: dict, scores: Scores, title: str, threshold: float | None = None) -> dict:
    """Write a synthesis stage's ``stats.json``, ``report.md`` and ``teacher_scores.png`` into ``output_dir``."""
    output_dir = Path(output_dir)
    stats = dict(stats, teacher_score=score_summary(scores))
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=False, default=str) + "\n")
    write_histogram(output_dir / "teacher_scores.png", scores, title, threshold)
    summary = stats["teacher_score"]
    score_line = (
        f"Teacher score over {summary['count']} pairs: mean {summary['mean']}, p10 {summary['p10']}, median {summary['p50']}, p90 {summary['p90']}."
        if summary["count"]
        else "No pair has a teacher score."
    )
    text = f"# {title}\n\n{score_line}\n\n![teacher scores](teacher_scores.png)\n\n## Counts per stage and reason\n\n{counts_table(stats['counts'])}\n"
    bad = stats.get("corpus", {}).get("bad_record_examples") or []
    if bad:
        text += "\n## Bad corpus records\n\n" + "\n".join(f"- `{b['where']}`: {b['reason']}" for b in bad[:20]) + "\n"
    (output_dir / "report.md").write_text(text)
    return stats
