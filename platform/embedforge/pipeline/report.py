"""The run report: what each stage did, and base vs stage 1 vs stage 2 vs merged (+ reranker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from embedforge.eval.gates import failed, gate_table, gates_from_dicts
from embedforge.eval.report import delta_table, main_score_table, plot_main_scores
from embedforge.pipeline.config import TRAIN_STAGES, VARIANT_PREFIX


def stage_lines(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for name, summary in summaries.items():
        if name in TRAIN_STAGES or name.startswith(VARIANT_PREFIX):
            status = "trained" if summary.get("trained") else f"not trained: {summary.get('reason')}"
            lines.append(f"- **{name}**: {status}; usable rows per dataset {json.dumps(summary.get('rows', {}))}; model `{summary['output']}`")
        elif "stats" in summary:
            stats = summary["stats"]
            counts = {key: stats[key] for key in ("attempted", "accepted", "kept", "pairs", "rejected", "removed") if key in stats}
            lines.append(f"- **{name}**: {json.dumps(counts)}; output `{summary['output']}`")
        elif name == "merge":
            lines.append(f"- **merge**: {summary['method']} of {summary['checkpoints']} (weights {summary.get('weights') or 'equal'}) -> `{summary['output']}`")
    return lines


def write_run_report(summaries: Mapping[str, Mapping[str, Any]], run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` and ``run_dir/comparison.png``; returns the markdown path."""
    lines = ["# Run report", "", "## Stages", "", *stage_lines(summaries), ""]
    evaluation = summaries.get("evaluate")
    if evaluation:
        runs = evaluation["results"]
        lines += ["## Evaluation: main score per task", "", main_score_table(runs), ""]
        if "base" in runs:
            lines += ["## Change against the base model", "", delta_table(runs, "base"), ""]
        if evaluation.get("gates"):
            gates = gates_from_dicts(evaluation["gates"])
            lines += ["## Held-out gates: does each produced model beat its starting point?", "", gate_table(gates), ""]
            lines += [f"Failed: {gate.line()}." for gate in failed(gates)] + [""]
        lines += [f"Models: {json.dumps(evaluation['models'])}.", f"Reranker: `{evaluation.get('reranker')}`, reranking the merged model's top hits.", ""]
        lines += ["![comparison](comparison.png)", ""]
        plot_main_scores(runs, run_dir / "comparison.png", title="main score per task and model")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
