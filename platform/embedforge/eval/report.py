"""Evaluation reports: ``results.json``, a markdown table and a PNG bar chart.

Functions take ``runs = {label: {task: metrics}}`` so one report can compare several
models (base, stage 1, stage 2, merged, + reranker) on the same tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from embedforge.eval.results import Metrics

Runs = Mapping[str, Mapping[str, Metrics]]


def tasks_of(runs: Runs) -> list[str]:
    return list(dict.fromkeys(task for results in runs.values() for task in results))


def main_score_table(runs: Runs, main_metrics: Mapping[str, str] | None = None, *, digits: int = 4) -> str:
    """Markdown table: one row per task (with its main metric's name), one column per run."""
    labels = list(runs)
    lines = ["| task | metric | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for task in tasks_of(runs):
        metric = (main_metrics or {}).get(task, "main_score")
        cells = []
        for label in labels:
            value = runs[label].get(task, {}).get("main_score")
            cells.append("-" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def delta_table(runs: Runs, baseline: str, *, digits: int = 4) -> str:
    """Markdown table of each run's main score minus ``baseline``'s, per task (``-`` where either is missing)."""
    labels = [label for label in runs if label != baseline]
    lines = ["| task | " + " | ".join(f"{label} - {baseline}" for label in labels) + " |", "|---|" + "---|" * len(labels)]
    for task in tasks_of(runs):
        base = runs.get(baseline, {}).get(task, {}).get("main_score")
        cells = []
        for label in labels:
            value = runs[label].get(task, {}).get("main_score")
            cells.append("-" if value is None or base is None else f"{value - base:+.{digits}f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_main_scores(runs: Runs, path: Path, *, title: str = "main score per task") -> Path:
    """Grouped bar chart of each task's main score, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = tasks_of(runs)
    labels = list(runs)
    width = 0.8 / max(1, len(labels))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(tasks) + 2), 4.0))
    for offset, label in enumerate(labels):
        values = [runs[label].get(task, {}).get("main_score") or 0.0 for task in tasks]
        positions = [index + (offset - (len(labels) - 1) / 2) * width for index in range(len(tasks))]
        axes.bar(positions, values, width=width, label=label)
    axes.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    lowest = min([0.0] + [value for results in runs.values() for metrics in results.values() if (value := metrics.get("main_score")) is not None])
    axes.set_ylim(min(0.0, lowest - 0.05), 1)
    axes.axhline(0, color="black", linewidth=0.5)
    axes.set_ylabel("main score")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
