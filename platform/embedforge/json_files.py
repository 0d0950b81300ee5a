"""JSON lines in, JSON out: the one reader of ``.jsonl`` files and the one writer of ``.json`` files.

The reader names ``FILE:LINE`` in every error, because data that is silently wrong gives
results that are silently wrong; what each value must hold is its caller's check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


BAD_LINE_MESSAGES = {"invalid_json": "invalid JSON", "bad_encoding": "not valid UTF-8", "blank_line": "blank line in a JSON lines file"}


class BadLine(ValueError):
    """A line of a JSON lines file that is not UTF-8, not JSON, or blank where that is not allowed.

    Its message names the file and line (``FILE:LINE: invalid JSON: ...``); ``code`` (a key of
    ``BAD_LINE_MESSAGES``) and ``detail`` are for readers that count bad lines by reason.
    """

    def __init__(self, where: str, code: str, detail: str = ""):
        super().__init__(f"{where}: {BAD_LINE_MESSAGES[code]}" + (f": {detail}" if detail else ""))
        self.where, self.code, self.detail = where, code, detail


def read_jsonl(path: str | Path, *, allow_blank: bool = True, keep_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """``(line_number, value)`` for every line of a JSON lines file, in file order.

    Blank lines are skipped (``allow_blank=False``: one is an error, for files whose line i
    must be record i). A line that is not UTF-8 or not JSON raises :class:`BadLine`; with
    ``keep_bad`` it is yielded as the value instead, so a reader that reports bad records
    and goes on can do so.
    """
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path}:{line_number}"
            if not raw.strip():
                if not allow_blank:
                    raise BadLine(where, "blank_line")
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                value = BadLine(where, "bad_encoding", f"{error.reason} at byte {error.start}")
            except json.JSONDecodeError as error:
                value = BadLine(where, "invalid_json", error.msg)
            if isinstance(value, BadLine) and not keep_bad:
                raise value
            yield line_number, value


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (the folder is made); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
