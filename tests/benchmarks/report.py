"""Writing benchmark figures into ``docs/benchmarks.md``.

Each benchmark script owns one section, fenced by ``<!-- bench:NAME -->`` markers, and
rewrites only that section, so scripts can run in any order or alone.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS_DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def machine_line() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or "?"
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}, measured {datetime.now(timezone.utc):%Y-%m-%d}"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, command: str, body: str, path: Path = BENCHMARKS_DOC) -> None:
    """Replace (or append) the section ``name`` with a title, the command that made it, and ``body``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\nCommand: `{command}` ({machine_line()}).\n\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures come from `make bench`; ratios are against baselines measured in the same run.\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
