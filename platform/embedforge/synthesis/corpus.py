"""Reading a BEIR-style corpus (jsonl or parquet) into passages, counting bad records.

A bad record (invalid JSON or encoding, a missing ``_id`` or ``text``, empty text) never
stops a job and is never dropped silently: it becomes a :class:`BadRecord` that names the
file and line (or parquet row) and the reason, and the stats report every one of them.
Long documents are cut into passages of at most ``chunk_tokens`` tokens with an overlap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from embedforge.config import ConfigModel, DataPath
from embedforge.json_files import BadLine, read_jsonl


class CorpusConfig(ConfigModel):
    """Where the corpus is and how it is cut into passages."""

    paths: list[DataPath]
    """Corpus files: BEIR jsonl (``_id``, ``title``, ``text``) or parquet with those columns."""
    max_docs: int | None = None
    """Read only the first N good documents (in file order); ``None`` reads them all."""
    chunk_tokens: int = 512
    """Token budget of one passage (title included); longer documents are chunked."""
    chunk_overlap: int = 64
    """Tokens shared by consecutive chunks of one document."""
    tokenizer: DataPath | None = None
    """Tokenizer folder used to count tokens; ``None`` is the shared Qwen3 tokenizer."""
    language: str = "English"
    """The corpus language, written into every pair's provenance."""


@dataclass(frozen=True)
class BadRecord:
    where: str
    """``file:line`` for jsonl, ``file:row N`` for parquet."""
    reason: str


@dataclass
class CorpusReport:
    documents: int = 0
    passages: int = 0
    bad_records: list[BadRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The corpus row of a stage's counts table."""
        return {"documents": self.documents, "passages": self.passages, "bad records": len(self.bad_records)}

    def to_dict(self, max_listed: int = 100) -> dict:
        reasons: dict[str, int] = {}
        for bad in self.bad_records:
            key = bad.reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "documents": self.documents,
            "passages": self.passages,
            "bad_records": len(self.bad_records),
            "bad_records_by_reason": reasons,
            "bad_record_examples": [asdict(bad) for bad in self.bad_records[:max_listed]],
        }


def check_record(record: object) -> tuple[dict | None, str | None]:
    """A clean ``{doc_id, title, text}`` or the reason the record is unusable."""
    if not isinstance(record, dict):
        return None, f"not_an_object: expected a JSON object, got {type(record).__name__}"
    for name in ("_id", "text"):
        if record.get(name) is None:
            return None, f"missing_field: {name}"
    text, title = record["text"], record.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        return None, "bad_type: title and text must be strings"
    if not text.strip():
        return None, "empty_text"
    return {"doc_id": str(record["_id"]), "title": title.strip(), "text": text.strip()}, None


def iter_file_records(path: Path) -> Iterator[tuple[str, dict | None, str | None]]:
    """``(where, document, reason)`` for every record of one jsonl or parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for row, record in enumerate(pq.read_table(path).to_pylist()):
            document, reason = check_record(record)
            yield f"{path}:row {row}", document, reason
        return
    for line_number, record in read_jsonl(path, keep_bad=True):
        if isinstance(record, BadLine):
            yield record.where, None, f"{record.code}: {record.detail}"
            continue
        document, reason = check_record(record)
        yield f"{path}:{line_number}", document, reason


def read_documents(paths: Sequence[Path], max_docs: int | None = None) -> tuple[list[dict], CorpusReport]:
    """Good documents in file order, and a report of the bad ones (file and line)."""
    report, documents, seen = CorpusReport(), [], set()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
        for where, document, reason in iter_file_records(path):
            if max_docs is not None and len(documents) >= max_docs:
                break
            if document is not None and document["doc_id"] in seen:
                document, reason = None, f"duplicate_id: {document['doc_id']}"
            if document is None:
                report.bad_records.append(BadRecord(where, reason or "unknown"))
                continue
            seen.add(document["doc_id"])
            documents.append(document)
    report.documents = len(documents)
    return documents, report


def chunk_document(document: dict, tokenizer, chunk_tokens: int, overlap: int) -> list[dict]:
    """Split one document into passages of at most ``chunk_tokens`` tokens (title repeated).

    Every passage gets ``passage_id = "{doc_id}#{index}"``; a short document is one passage
    with index 0, so ids never depend on the budget for documents that fit.
    """
    if overlap >= chunk_tokens:
        raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_tokens ({chunk_tokens})")
    title = document["title"]
    title_tokens = len(tokenizer(title, add_special_tokens=False)["input_ids"]) if title else 0
    budget = max(chunk_tokens - title_tokens, 16)
    encoded = tokenizer(document["text"], add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    pieces = []
    if len(offsets) <= budget:
        pieces.append(document["text"])
    else:
        step = max(budget - overlap, 1)
        for start in range(0, len(offsets), step):
            window = offsets[start : start + budget]
            pieces.append(document["text"][window[0][0] : window[-1][1]].strip())
            if start + budget >= len(offsets):
                break
    return [
        {
            "passage_id": f"{document['doc_id']}#{index}",
            "doc_id": document["doc_id"],
            "title": title,
            "text": piece,
            "passage": f"{title}\n{piece}" if title else piece,
        }
        for index, piece in enumerate(pieces)
    ]


def read_passages(config: CorpusConfig) -> tuple[list[dict], CorpusReport]:
    """Read, validate and chunk the corpus; passages come back in a deterministic order."""
    from embedforge.paths import qwen3_tokenizer_dir
    from embedforge.tokenization import load_tokenizer

    documents, report = read_documents(config.paths, config.max_docs)
    tokenizer = load_tokenizer(config.tokenizer or qwen3_tokenizer_dir())
    passages = [p for document in documents for p in chunk_document(document, tokenizer, config.chunk_tokens, config.chunk_overlap)]
    report.passages = len(passages)
    return passages, report
