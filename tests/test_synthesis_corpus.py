"""Corpus reading: bad records are counted with file and line; long documents are chunked."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedforge.paths import qwen3_tokenizer_dir
from embedforge.synthesis.corpus import CorpusConfig, chunk_document, read_documents, read_passages
from embedforge.tokenization import load_tokenizer


def test_bad_records_are_counted_with_file_and_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"_id": "a", "title": "T", "text": "good one"}).encode(),
        b"{not json",
        json.dumps({"_id": "b", "title": "T"}).encode(),
        json.dumps({"_id": "c", "text": "   "}).encode(),
        b'{"_id": "d", "text": "caf\xe9"}',
        json.dumps(["a list"]).encode(),
        json.dumps({"_id": "a", "text": "duplicate id"}).encode(),
        b"",
        json.dumps({"_id": 7, "title": None, "text": "numeric id, null title"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    documents, report = read_documents([path])
    assert [d["doc_id"] for d in documents] == ["a", "7"]
    assert documents[1]["title"] == ""
    got = {bad.where.rsplit(":", 1)[1]: bad.reason.split(":")[0] for bad in report.bad_records}
    assert got == {"2": "invalid_json", "3": "missing_field", "4": "empty_text", "5": "bad_encoding", "6": "not_an_object", "7": "duplicate_id"}
    assert all(bad.where.startswith(str(path)) for bad in report.bad_records)
    summary = report.to_dict()
    assert summary["bad_records"] == 6 and summary["bad_records_by_reason"]["invalid_json"] == 1


def test_parquet_corpus_and_max_docs(tmp_path):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist([{"_id": str(i), "title": "", "text": f"doc {i}" if i != 1 else ""} for i in range(5)]), path)
    documents, report = read_documents([path], max_docs=3)
    assert [d["doc_id"] for d in documents] == ["0", "2", "3"]
    assert [bad.where for bad in report.bad_records] == [f"{path}:row 1"]


def test_chunking_respects_the_token_budget_and_overlap():
    tokenizer = load_tokenizer(qwen3_tokenizer_dir())
    text = " ".join(f"word{i}" for i in range(400))
    passages = chunk_document({"doc_id": "d", "title": "A title", "text": text}, tokenizer, chunk_tokens=100, overlap=20)
    assert len(passages) > 3
    assert [p["passage_id"] for p in passages] == [f"d#{i}" for i in range(len(passages))]
    for passage in passages:
        assert len(tokenizer(passage["passage"], add_special_tokens=False)["input_ids"]) <= 100 + 2
        assert passage["passage"].startswith("A title\n")
    assert passages[0]["text"].split()[-1] in passages[1]["text"]  # overlap carries words over
    assert passages[-1]["text"].endswith("word399")
    short = chunk_document({"doc_id": "s", "title": "", "text": "short text"}, tokenizer, 100, 20)
    assert short == [{"passage_id": "s#0", "doc_id": "s", "title": "", "text": "short text", "passage": "short text"}]
    with pytest.raises(ValueError, match="chunk_overlap"):
        chunk_document({"doc_id": "s", "title": "", "text": "x"}, tokenizer, 10, 10)


def test_read_passages_on_scifact(shared_data):
    passages, report = read_passages(CorpusConfig(paths=[shared_data / "retrieval/scifact/corpus.jsonl"], max_docs=20, chunk_tokens=128, chunk_overlap=16))
    assert report.documents == 20 and report.bad_records == []
    assert report.passages == len(passages) > 20
    assert len({p["passage_id"] for p in passages}) == len(passages)
