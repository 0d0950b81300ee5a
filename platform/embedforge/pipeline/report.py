"""The run report: what each stage did, and base vs stage 1 vs stage 2 vs merged (+ reranker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping


def comparison_rows(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> tuple[list[str], list[list[Any]]]:
    """Task names and one row per model (and reranked variant) of main scores."""
    runs: dict[str, Mapping[str, Mapping[str, float]]] = {}
    for label, by_task in results.items():
        for task, metrics in by_task.items():
            run_label, _, suffix = task.partition("+")
            key = f"{label}+{suffix}" if suffix else label
            runs.setdefault(key, {})[run_label] = metrics
    tasks = sorted({task for by_task in runs.values() for task in by_task})
    rows = [[label] + [by_task.get(task, {}).get("main_score") for task in tasks] for label, by_task in runs.items()]
    return tasks, rows


def plot_comparison(tasks: list[str], rows: list[list[Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    width = 0.8 / max(1, len(rows))
    for offset, row in enumerate(rows):
        values = [value if value is not None else 0.0 for value in row[1:]]
        axes.bar([index + offset * width for index in range(len(tasks))], values, width=width, label=row[0])
    axes.set_xticks([index + width * (len(rows) - 1) / 2 for index in range(len(tasks))], tasks, rotation=20, ha="right")
    axes.set_ylabel("main score")
    axes.set_title("Main score per task and model")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def stage_lines(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for name, summary in summaries.items():
        if name in ("stage1", "stage2", "reranker"):
            status = "trained" if summary.get("trained") else f"not trained: {summary.get('reason')}"
            lines.append(f"- **{name}**: {status}; rows per dataset {json.dumps(summary.get('rows', {}))}; model `{summary['output']}`")
        elif "stats" in summary:
            stats = summary["stats"]
            counts = {key: stats[key] for key in ("attempted", "accepted", "kept", "rows", "pairs", "rejected", "removed") if key in stats}
            lines.append(f"- **{name}**: {json.dumps(counts)}; output `{summary['output']}`")
        elif name == "merge":
            lines.append(f"- **merge**: {summary['method']} of {len(summary['checkpoints'])} stage-2 checkpoints -> `{summary['output']}`")
    return lines


def write_report(summaries: Mapping[str, Mapping[str, Any]], run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` and ``run_dir/comparison.png``; returns the markdown path."""
    lines = ["# Run report", "", "## Stages", "", *stage_lines(summaries), ""]
    evaluation = summaries.get("evaluate")
    if evaluation:
        tasks, rows = comparison_rows(evaluation["results"])
        lines += ["## Evaluation (main score per task)", "", "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        lines += ["| " + " | ".join([row[0]] + [f"{value:.4f}" if value is not None else "-" for value in row[1:]]) + " |" for row in rows]
        lines += ["", f"Models: {json.dumps(evaluation['models'])}; reranker: `{evaluation.get('reranker')}` (reranks the merged model's top hits).", ""]
        lines += ["![comparison](comparison.png)", ""]
        plot_comparison(tasks, rows, run_dir / "comparison.png")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
