"""BEIR-format retrieval data: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/*.tsv``.

Readers fail loudly on bad records, naming the file and line: evaluation data that is
silently wrong gives numbers that are silently wrong.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from embedforge.config import ConfigModel, DataPath
from embedforge.json_files import read_jsonl


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and text joined by a space, as mteb and BEIR feed documents to encoders."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


Qrels = dict[str, dict[str, int]]
"""``{query_id: {doc_id: relevance}}``."""


def require_fields(record: object, fields: tuple[str, ...], where: str) -> None:
    """A JSON object with every one of ``fields``, or an error naming ``where`` (``file:line``)."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [field for field in fields if field not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")


def load_corpus(path: str | Path) -> dict[str, Document]:
    """Documents by id from a BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``)."""
    corpus = {}
    for line_number, record in read_jsonl(path):
        require_fields(record, ("_id", "text"), f"{path}:{line_number}")
        doc_id = str(record["_id"])
        corpus[doc_id] = Document(id=doc_id, title=record.get("title") or "", text=record["text"])
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """Query texts by id from a BEIR ``queries.jsonl`` (``_id``, ``text``)."""
    queries = {}
    for line_number, record in read_jsonl(path):
        require_fields(record, ("_id", "text"), f"{path}:{line_number}")
        queries[str(record["_id"])] = record["text"]
    return queries


def load_qrels(path: str | Path) -> Qrels:
    """Relevance judgements from a BEIR qrels TSV with header ``query-id corpus-id score``."""
    path = Path(path)
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t")
        header = next(rows, None)
        if header is None or [column.strip() for column in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ValueError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header}")
        for line_number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{line_number}: expected 3 tab-separated columns, got {len(row)}")
            try:
                score = int(row[2])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: score {row[2]!r} is not an integer") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


class RetrievalDataConfig(ConfigModel):
    """A BEIR-format retrieval set: corpus, queries and one qrels file."""

    corpus: DataPath
    queries: DataPath
    qrels: DataPath

    def load(self) -> tuple[dict[str, Document], dict[str, str], Qrels]:
        return load_corpus(self.corpus), load_queries(self.queries), load_qrels(self.qrels)
