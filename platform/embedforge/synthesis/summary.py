"""The end-of-run summary the synthesis commands print."""

from __future__ import annotations

from pathlib import Path


def print_summary(stats: dict, output_dir: Path) -> None:
    """Counts per stage and reason, the score summary, and where the outputs are."""
    print(f"\n== {stats['stage']} summary ({stats.get('seconds', '?')} s)")
    for stage, counts in stats["counts"].items():
        for name, value in counts.items():
            print(f"  {stage:<11} {name:<40} {value}")
    score = stats.get("teacher_score", {})
    if score.get("count"):
        print(f"  teacher score: mean {score['mean']}  p10 {score['p10']}  median {score['p50']}  p90 {score['p90']}")
    print(f"  outputs: {output_dir}/pairs/*.parquet, stats.json, report.md, teacher_scores.png")
