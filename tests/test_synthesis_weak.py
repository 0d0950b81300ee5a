"""Weak pairs without an LLM: the sentence splitter, the pure row function, and the Ray stage.

The row-function tests run on real SciFact passages (no Ray); one Ray run over the first 30
SciFact documents checks counts, provenance, that Ray's output equals the pure function's,
resume and a refused re-plan, and that training reads the folder. The CLI test checks a bad
config fails in seconds with one line naming the field, before Ray starts.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from embedforge.cli import main
from embedforge.config import ConfigError, load_config, parse_config
from embedforge.synthesis.corpus import CorpusConfig, read_passages
from embedforge.synthesis.shards import PAIR_SCHEMA, REJECT_SCHEMA, read_pairs, read_rejected
from embedforge.synthesis.weak import WeakConfig, WeakRules, split_sentences, weak_pairs, weak_rules

REPO = Path(__file__).resolve().parents[1]
SCIFACT = "${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"


def rules(**kinds) -> WeakRules:
    counts = {"title": 0, "ict": 0, "crop": 0, **kinds}
    return WeakRules(kinds=tuple(counts.items()))


def make_passage(text: str, title: str = "", doc_id: str = "d1") -> dict:
    return {"passage_id": f"{doc_id}#0", "doc_id": doc_id, "title": title, "text": text, "passage": f"{title}\n{text}" if title else text}


@pytest.fixture(scope="module")
def passages(shared_data) -> list[dict]:
    found, report = read_passages(CorpusConfig(paths=[shared_data / "retrieval/scifact/corpus.jsonl"], max_docs=40))
    assert report.documents == 40 and not report.bad_records
    return found


def test_sentence_splitter():
    text = "Smith et al. found it in 2001. Fig. 2 shows the U.S. data (p < 0.05). Then 5 mice died! Why? e.g. This stays. It ends etc. Next one."
    assert split_sentences(text) == [
        "Smith et al. found it in 2001.",
        "Fig. 2 shows the U.S. data (p < 0.05).",
        "Then 5 mice died!",
        "Why? e.g. This stays.",
        "It ends etc.",
        "Next one.",
    ]
    assert split_sentences('He said "Stop." "Now" 3.5 mg. and more.  1999 was late.') == ['He said "Stop."', '"Now" 3.5 mg. and more.', "1999 was late."]
    assert split_sentences("第一句。第二句！") == ["第一句。", "第二句！"]
    assert split_sentences("  no end mark  ") == ["no end mark"]


def test_title_pairs_and_no_title_rejection(passages):
    passage = passages[0]
    pairs, rejected = weak_pairs(passage, rules(title=1))
    assert rejected == [] and len(pairs) == 1
    pair = pairs[0]
    assert (pair["query"], pair["positive"]) == (passage["title"], passage["text"])
    assert pair["task_type"] == "weak:title" and pair["engine"] == "weak" and pair["negatives"] == []
    assert (pair["source_doc_id"], pair["passage_id"], pair["positive_ids"]) == (passage["doc_id"], passage["passage_id"], [passage["doc_id"]])
    assert pair["language"] == pair["corpus_language"] == "English" and pair["instruction"] is None
    assert set(pair) <= set(PAIR_SCHEMA.names)

    pairs, rejected = weak_pairs(make_passage("Only a body. With two sentences."), rules(title=1))
    assert pairs == [] and [r["reason"] for r in rejected] == ["title:no_title"]
    assert set(rejected[0]) == set(REJECT_SCHEMA.names) and rejected[0]["stage"] == "weak"


def test_ict_query_is_a_sentence_and_positive_is_the_rest(passages):
    checked = 0
    for passage in passages:
        sentences = split_sentences(passage["text"])
        pairs, rejected = weak_pairs(passage, WeakRules(kinds=(("ict", 2),), ict_keep_sentence=0.0, ict_min_words=5))
        assert len(pairs) + len(rejected) == 2
        assert len({pair["query"] for pair in pairs}) == len(pairs), "two ICT pairs of a passage use different sentences"
        for pair in pairs:
            assert pair["query"] in sentences and len(pair["query"].split()) >= 5
            title, _, rest = pair["positive"].partition("\n")
            assert title == passage["title"]
            others = list(sentences)
            others.remove(pair["query"])
            assert split_sentences(rest) == others and pair["query"] not in rest
            checked += 1
    assert checked > 60

    passage = passages[0]
    kept, _ = weak_pairs(passage, WeakRules(kinds=(("ict", 1),), ict_keep_sentence=1.0))
    assert kept[0]["positive"] == passage["passage"] and kept[0]["query"] in kept[0]["positive"]
    left_in = sum(pair["positive"] == p["passage"] for p in passages for pair in weak_pairs(p, WeakRules(kinds=(("ict", 1),), ict_keep_sentence=0.5))[0])
    assert 5 < left_in < 35, "about half of 40 ICT pairs keep their sentence"


def test_crop_spans_are_word_windows_of_the_passage(passages):
    bounds = WeakRules(kinds=(("crop", 3),), crop_min_words=8, crop_max_words=30)
    for passage in passages:
        words = passage["text"].split()
        pairs, rejected = weak_pairs(passage, bounds)
        assert len(pairs) == 3 and rejected == []
        for pair in pairs:
            assert pair["query"] != pair["positive"]
            for crop in (pair["query"], pair["positive"]):
                assert crop in passage["text"]
                span = crop.split()
                assert 8 <= len(span) <= 30
                assert any(words[i : i + len(span)] == span for i in range(len(words) - len(span) + 1)), "a crop is whole words"


def test_pairs_are_deterministic_and_kinds_independent(passages):
    full = WeakRules(kinds=(("title", 1), ("ict", 2), ("crop", 2)))
    first = [weak_pairs(p, full) for p in passages]
    assert first == [weak_pairs(p, full) for p in passages]
    ids = [row["id"] for pairs, rejected in first for row in pairs + rejected]
    assert len(ids) == len(set(ids)) == 5 * len(passages)
    other_seed = [weak_pairs(p, WeakRules(kinds=full.kinds, seed=1)) for p in passages]
    assert [r["query"] for pairs, _ in other_seed for r in pairs] != [r["query"] for pairs, _ in first for r in pairs]
    ict_only = [weak_pairs(p, WeakRules(kinds=(("ict", 2),)))[0] for p in passages]
    assert ict_only == [[r for r in pairs if r["task_type"] == "weak:ict"] for pairs, _ in first]


def test_rejection_reasons():
    def reasons(passage, **kwargs):
        return [r["reason"] for r in weak_pairs(passage, WeakRules(**kwargs))[1]]

    one = make_passage("Just one sentence with several words in it here")
    assert reasons(one, kinds=(("ict", 2),)) == ["ict:one_sentence", "ict:one_sentence"]
    assert reasons(make_passage("Too short. Also tiny. Nope."), kinds=(("ict", 1),)) == ["ict:sentences_too_short"]
    assert reasons(make_passage("This sentence has enough words in it. Short one."), kinds=(("ict", 2),)) == ["ict:too_few_sentences"]
    assert reasons(make_passage("five words are right here"), kinds=(("crop", 1),), crop_min_words=6) == ["crop:too_short"]
    assert reasons(make_passage("five words are right here"), kinds=(("crop", 1),), crop_min_words=5, crop_max_words=5) == ["crop:identical_spans"]


def test_config_validation_names_the_field():
    base = {"output_dir": "out", "corpus": {"paths": ["c.jsonl"]}}
    cases = [
        ({"kinds": {"title": 0, "ict": 0, "crop": 0}}, "kinds: .*at least one of title, ict, crop"),
        ({"kinds": {"title": 2}}, "kinds.title: .*less than or equal to 1"),
        ({"kinds": {"titel": 1}}, "kinds.titel: Extra inputs"),
        ({"crop_min_words": 20, "crop_max_words": 10}, r"crop_max_words: .*must be >= crop_min_words \(20\)"),
        ({"ict_keep_sentence": 1.5}, "ict_keep_sentence: "),
        ({"shard_size": 0}, "shard_size: "),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, **extra}, WeakConfig, "w.yaml")
    config = parse_config({**base, "kinds": {"title": 1, "ict": 1, "crop": 0}}, WeakConfig, "w.yaml")
    assert weak_rules(config).kinds == (("title", 1), ("ict", 1), ("crop", 0))
    assert load_config(REPO / "jobs/configs/weak_scifact.yaml", WeakConfig).corpus.max_docs is None


def test_cli_bad_field_exits_2_with_one_line_before_ray(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "corpus": {"paths": [SCIFACT]}, "crop_min_words": 20, "crop_max_words": 10}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "platform"), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "embedforge.cli", "weak", "--config", str(config)], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedforge weak: error: ") and "crop_max_words" in lines[0], result.stderr
    assert "Ray" not in result.stderr and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 30


def weak_yaml(path: Path, output: Path, **extra) -> Path:
    data = {
        "output_dir": str(output),
        "corpus": {"paths": [SCIFACT], "max_docs": 30, "chunk_tokens": 256, "chunk_overlap": 32},
        "kinds": {"title": 1, "ict": 2, "crop": 1},
        "crop_min_words": 8,
        "crop_max_words": 48,
        "shard_size": 8,
        "ray_data": {"rows_per_block": 3},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_weak_stage_on_ray_resumes_and_feeds_training(local_ray, tmp_path, capsys):
    from embedforge.training.pairs import read_pair_rows

    output = tmp_path / "weak"
    config_path = weak_yaml(tmp_path / "w.yaml", output)
    assert main(["weak", "--config", str(config_path)]) == 0
    printed = capsys.readouterr().out
    assert "== weak summary" in printed and "0 already done" in printed

    config = load_config(config_path, WeakConfig)
    passages, _ = read_passages(config.corpus)
    stats = json.loads((output / "stats.json").read_text())
    assert stats["corpus"]["documents"] == 30 and stats["passages"] == len(passages) >= 30
    assert stats["records"] == stats["attempted"] == 4 * len(passages)
    assert stats["accepted"] + stats["rejected"] == stats["attempted"]
    assert sum(stats["accepted_by_kind"].values()) == stats["accepted"] and sum(stats["rejected_by_reason"].values()) == stats["rejected"]
    assert stats["accepted_by_kind"]["title"] == len(passages) and stats["accepted_by_kind"]["crop"] > 0
    assert stats["shards"] == stats["shards_done"] == -(-len(passages) // 8) > 1
    assert "| weak | pairs ict |" in (output / "report.md").read_text()

    pairs, rejected = read_pairs(output).to_pylist(), read_rejected(output).to_pylist()
    for shard in (output / "pairs").glob("*.parquet"):
        assert pq.read_schema(shard).equals(PAIR_SCHEMA, check_metadata=False)
    assert len(pairs) == stats["accepted"] and len(rejected) == stats["rejected"]
    assert all(r["engine"] == "weak" and r["language"] == r["corpus_language"] == "English" and r["instruction"] is None and r["negatives"] == [] for r in pairs)
    assert {r["task_type"] for r in pairs} == {"weak:title", "weak:ict", "weak:crop"}
    rules = weak_rules(config)
    expected = [weak_pairs(p, rules) for p in passages]
    assert pairs == [dict.fromkeys(PAIR_SCHEMA.names) | row for rows, _ in expected for row in rows], "Ray's output is the pure function's, in passage order"
    assert rejected == [row for _, rows in expected for row in rows]

    rows = read_pair_rows(output, num_negatives=0)
    assert len(rows.rows) == len(pairs) and rows.skipped == {}
    assert rows.rows[0] == {"query": pairs[0]["query"], "positive": pairs[0]["positive"], "negatives": [], "instruction": None, "symmetric": False}

    done = {p.name: p.stat().st_mtime_ns for p in (output / "done").glob("*.json")}
    assert main(["weak", "--config", str(config_path)]) == 0
    assert f"{len(done)} already done, 0 to run" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (output / "done").glob("*.json")} == done
    assert read_pairs(output).to_pylist() == pairs

    assert main(["weak", "--config", str(weak_yaml(tmp_path / "w2.yaml", output, seed=1))]) == 2
    assert "different plan" in capsys.readouterr().err
