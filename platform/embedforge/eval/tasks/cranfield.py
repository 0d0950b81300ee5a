"""Cranfield 1400 in SMART format, as an mteb retrieval task with graded gains.

Quirks of the files (``../shared/data/retrieval/cranfield``), and what this module does:

- ``cran.all.1400``: records start ``.I n``; fields ``.T`` title, ``.A`` authors, ``.B``
  source, ``.W`` abstract. The abstract repeats the title as its first sentence, so a
  document's text is ``.W`` alone (title left empty) to avoid counting the title twice.
- ``cran.qry``: 225 queries whose ``.I`` numbers skip (001, 002, 004, ...). ``cranqrel``
  numbers queries 1..225 *by position* in ``cran.qry``, so query ids here are positions
  (``"1"`` .. ``"225"``); :func:`read_smart` keeps the file's own number as well.
- ``cranqrel``: ``query doc code``; code 1 = complete answer (most relevant) .. 4 = minimum
  interest, and -1 = unjudged. Codes map to graded gains ``5 - code`` (1 -> 4, ..., 4 -> 1)
  because nDCG wants larger = better; -1 rows are dropped and counted. Some lines end in
  CRLF; any other code is an error naming the line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from embedforge.data.beir import Document
from embedforge.eval.sampling import retrieval_subset
from embedforge.eval.tasks.limits import TaskLimits
from embedforge.eval.tasks.mteb_format import LocalRetrieval, local_metadata, retrieval_split
from embedforge.paths import shared_data_dir

logger = logging.getLogger(__name__)

CRANFIELD_INSTRUCTION = "Given a question about aeronautics, retrieve abstracts of papers that answer it"
UNJUDGED_CODE = -1


@dataclass(frozen=True)
class SmartRecord:
    number: str
    fields: dict[str, str]


def read_smart(path: Path) -> list[SmartRecord]:
    """Records of a SMART file in file order; each field's lines joined by spaces."""
    records: list[SmartRecord] = []
    field = None
    for line_number, raw in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), start=1):
        line = raw.rstrip("\r")
        if line.startswith(".I"):
            records.append(SmartRecord(number=line[2:].strip(), fields={}))
            field = None
        elif len(line) == 2 and line.startswith(".") and line[1].isalpha():
            if not records:
                raise ValueError(f"{path}:{line_number}: field {line} before the first .I record")
            field = line[1]
            records[-1].fields.setdefault(field, "")
        elif field is not None:
            text = line.strip()
            if text:
                current = records[-1].fields[field]
                records[-1].fields[field] = f"{current} {text}" if current else text
    return records


def read_cranfield_corpus(path: Path) -> dict[str, Document]:
    return {record.number: Document(id=record.number, title="", text=record.fields.get("W", "")) for record in read_smart(path)}


def read_cranfield_queries(path: Path) -> dict[str, str]:
    """Queries keyed by position ``"1"``.. (the numbering ``cranqrel`` uses)."""
    return {str(position): record.fields.get("W", "") for position, record in enumerate(read_smart(path), start=1)}


def read_cranfield_qrels(path: Path) -> tuple[dict[str, dict[str, int]], int]:
    """``(qrels with gains 5 - code, number of unjudged rows dropped)``."""
    qrels: dict[str, dict[str, int]] = {}
    unjudged = 0
    for line_number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"{path}:{line_number}: expected 'query doc code', got {raw.strip()!r}")
        query_id, doc_id, code_text = parts
        try:
            code = int(code_text)
        except ValueError:
            raise ValueError(f"{path}:{line_number}: relevance code {code_text!r} is not an integer") from None
        if code == UNJUDGED_CODE:
            unjudged += 1
            continue
        if not 1 <= code <= 4:
            raise ValueError(f"{path}:{line_number}: relevance code {code} is not -1 or 1..4")
        qrels.setdefault(query_id, {})[doc_id] = 5 - code
    return qrels, unjudged


class Cranfield(LocalRetrieval):
    metadata = local_metadata(
        "cranfield",
        "Retrieval",
        "Cranfield 1400 aeronautics abstracts; graded judgements mapped to gains 5 - code.",
        dataset="shared-data/retrieval/cranfield",
        revision="smart-1400",
        instruction=CRANFIELD_INSTRUCTION,
        reference="http://ir.dcs.gla.ac.uk/resources/test_collections/cran/",
        license="not specified",
    )

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        folder = shared_data_dir() / "retrieval" / "cranfield"
        qrels, unjudged = read_cranfield_qrels(folder / "cranqrel")
        corpus, queries, qrels = retrieval_subset(
            read_cranfield_corpus(folder / "cran.all.1400"),
            read_cranfield_queries(folder / "cran.qry"),
            qrels,
            max_queries=self.limits.max_queries,
            max_corpus_docs=self.limits.max_corpus_docs,
        )
        logger.info("cranfield: %d queries, %d documents, %d unjudged qrels rows dropped", len(queries), len(corpus), unjudged)
        self.dataset = {"default": {"test": retrieval_split(corpus, queries, qrels)}}
        self.data_loaded = True
