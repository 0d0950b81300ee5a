"""The one JSON lines reader (every error names FILE:LINE) and the one JSON writer."""

import json
import re

import pytest

from embedforge.json_files import BadLine, read_jsonl, write_json


def test_read_jsonl_yields_values_with_line_numbers_and_skips_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n  \n"text"\n[1, 2]\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, "text"), (5, [1, 2])]


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(BadLine, match="^" + re.escape(str(bad_json)) + ":2: invalid JSON: Expecting value$"):
        list(read_jsonl(bad_json))
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"a": 1}\n{"a": "café"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match="^" + re.escape(str(latin1)) + ":2: not valid UTF-8: invalid continuation byte at byte 10$"):
        list(read_jsonl(latin1))
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"a": 1}\n\n{"a": 2}\n')
    with pytest.raises(ValueError, match="^" + re.escape(str(blank)) + ":2: blank line in a JSON lines file$"):
        list(read_jsonl(blank, allow_blank=False))


def test_keep_bad_yields_bad_lines_and_goes_on(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n\xff\n{"a": 2}\n')
    values = list(read_jsonl(path, keep_bad=True))
    assert [number for number, _ in values] == [1, 2, 3, 4]
    assert values[0][1] == {"a": 1} and values[3][1] == {"a": 2}
    assert [(v.where, v.code) for _, v in values[1:3]] == [(f"{path}:2", "invalid_json"), (f"{path}:3", "bad_encoding")]


def test_write_json_makes_the_folder_and_keeps_unicode(tmp_path):
    path = write_json(tmp_path / "new" / "data.json", {"query": "café", "n": [1, 2]})
    assert path.read_text(encoding="utf-8") == '{\n  "query": "café",\n  "n": [\n    1,\n    2\n  ]\n}\n'
    assert json.loads(path.read_text(encoding="utf-8")) == {"query": "café", "n": [1, 2]}
