"""The ``python`` code blocks of the docs, so tests can run them as written (STYLE item 13).

Every such block ends in an assertion; ``run_snippet`` executes one in a fresh namespace,
after applying ``replacements`` (for example, the documented server address by the address
of the server a test started).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

DOCS = sorted((Path(__file__).resolve().parents[1] / "docs").glob("*.md")) + [Path(__file__).resolve().parents[1] / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_snippets(path: Path) -> list[str]:
    return FENCE.findall(path.read_text())


def all_snippets() -> dict[str, str]:
    """``{"docs/name.md#N": code}`` for every python block of the docs and the README."""
    return {f"{path.parent.name}/{path.name}#{n}": code for path in DOCS for n, code in enumerate(python_snippets(path), 1)}


def ends_in_assertion(code: str) -> bool:
    body = ast.parse(code).body
    return bool(body) and isinstance(body[-1], ast.Assert)


def run_snippet(code: str, replacements: dict[str, str] | None = None) -> dict:
    for old, new in (replacements or {}).items():
        assert old in code, f"the snippet no longer contains {old!r}"
        code = code.replace(old, new)
    namespace: dict = {"__name__": "__doc_snippet__"}
    exec(compile(code, "<doc snippet>", "exec"), namespace)
    return namespace
