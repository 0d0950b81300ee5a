"""Offline evaluation tasks: the readers get every quirk of the shared data files right."""

from __future__ import annotations

import json

import pytest

from embedforge.eval.sampling import retrieval_subset, sample_ids, stable_order
from embedforge.eval.tasks import OFFLINE_TASKS, TaskLimits, TaskUnavailableError, build_task
from embedforge.eval.tasks.banking77 import read_labelled_csv
from embedforge.data.beir import Document
from embedforge.eval.tasks.cranfield import read_cranfield_corpus, read_cranfield_qrels, read_cranfield_queries, read_smart
from embedforge.eval.tasks.mteb_format import InMemoryRetrieval
from embedforge.eval.tasks.scifact import SCIFACT_INSTRUCTION, load_scifact_dev
from embedforge.eval.tasks.sts import STS_INSTRUCTION, read_stsb_multi_mt, read_stsbenchmark
from embedforge.eval.tasks.xquad import read_xquad


def test_stable_order_is_independent_of_input_order():
    ids = [str(number) for number in range(50)]
    assert stable_order(ids) == stable_order(reversed(ids))
    assert stable_order(ids) != sorted(ids)
    assert sample_ids(ids, 5) == sample_ids(list(reversed(ids)), 5) and len(sample_ids(ids, 5)) == 5
    assert sample_ids(ids, None) == sorted(ids)


def test_retrieval_subset_keeps_every_judged_document_and_fills_to_the_limit():
    corpus = {f"d{number}": object() for number in range(100)}
    queries = {f"q{number}": f"query {number}" for number in range(10)}
    qrels = {f"q{number}": {f"d{number}": 1, f"d{number + 50}": 2} for number in range(10)}
    sub_corpus, sub_queries, sub_qrels = retrieval_subset(corpus, queries, qrels, max_queries=4, max_corpus_docs=20)
    assert len(sub_queries) == 4 and set(sub_qrels) == set(sub_queries)
    judged = {doc for judgements in sub_qrels.values() for doc in judgements}
    assert judged <= set(sub_corpus) and len(sub_corpus) == 20
    assert retrieval_subset(corpus, queries, qrels, max_queries=4, max_corpus_docs=20)[0].keys() == sub_corpus.keys()
    tight = retrieval_subset(corpus, queries, qrels, max_queries=4, max_corpus_docs=3)[0]
    assert set(tight) == judged  # judged documents survive even past the limit
    with pytest.raises(ValueError, match="no query text"):
        retrieval_subset(corpus, {}, qrels)


def test_cranfield_numbers_queries_by_position_and_maps_codes_to_gains(shared_data):
    folder = shared_data / "retrieval" / "cranfield"
    corpus = read_cranfield_corpus(folder / "cran.all.1400")
    queries = read_cranfield_queries(folder / "cran.qry")
    qrels, unjudged = read_cranfield_qrels(folder / "cranqrel")
    assert len(corpus) == 1400 and len(queries) == 225
    records = read_smart(folder / "cran.qry")
    assert [record.number for record in records[:3]] == ["001", "002", "004"]  # the file's ids skip
    assert queries["3"].startswith("what problems of heat conduction in composite slabs")
    assert corpus["1"].text.startswith("experimental investigation of the aerodynamics of a wing")
    assert unjudged == 225  # -1 rows (some ending in CRLF) are dropped and counted
    assert sum(len(judgements) for judgements in qrels.values()) == 1837 - 225
    assert {gain for judgements in qrels.values() for gain in judgements.values()} == {1, 2, 3, 4}
    assert set(qrels) == set(queries) and {doc for j in qrels.values() for doc in j} <= set(corpus)


def test_cranfield_qrels_reject_unknown_codes_naming_the_line(tmp_path):
    path = tmp_path / "cranqrel"
    path.write_text("1 184 2\n1 29 7\n")
    with pytest.raises(ValueError, match=r"cranqrel:2: relevance code 7"):
        read_cranfield_qrels(path)


def test_stsbenchmark_reads_tabs_with_extra_columns_and_quotes(shared_data, tmp_path):
    pairs = read_stsbenchmark(shared_data / "sts" / "stsbenchmark" / "sts-dev.csv")
    assert len(pairs) == 1500
    assert all(0.0 <= score <= 5.0 for _, _, score in pairs)
    assert pairs[0] == ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0)
    assert ("US Supreme Court limits president's recess appointments power", "High court checks President's recess appointment power", 5.0) in pairs
    bad = tmp_path / "sts.csv"
    bad.write_text('g\tf\t2012\t1\t5.0\t"quoted" a\tb\ng\tf\t2012\t2\tfive\ta\tb\n')
    with pytest.raises(ValueError, match=r"sts.csv:2: score 'five'"):
        read_stsbenchmark(bad)


def test_stsb_multi_mt_reads_csv_per_language(shared_data):
    german = read_stsb_multi_mt(shared_data / "sts" / "stsb-multi-mt" / "stsb-de-dev.csv")
    english = read_stsb_multi_mt(shared_data / "sts" / "stsb-multi-mt" / "stsb-en-dev.csv")
    assert len(german) == len(english) == 1500
    assert german[0] == ("Ein Mann mit einem Schutzhelm tanzt.", "Ein Mann mit einem Schutzhelm tanzt.", 5.0)
    assert [score for _, _, score in german] == [score for _, _, score in english]


def test_banking77_has_77_labels(shared_data, tmp_path):
    folder = shared_data / "classification" / "banking77"
    test = read_labelled_csv(folder / "test.csv")
    assert len(test) == 3080
    assert {label for _, label in test} == set(json.loads((folder / "categories.json").read_text()))
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\nhi,x\n")
    with pytest.raises(ValueError, match="bad.csv:1: expected the header"):
        read_labelled_csv(bad)


def test_xquad_is_parallel_across_languages(shared_data):
    folder = shared_data / "multilingual" / "xquad"
    en_corpus, en_queries, en_qrels = read_xquad(folder / "xquad.en.json")
    de_corpus, de_queries, de_qrels = read_xquad(folder / "xquad.de.json")
    assert len(en_corpus) == len(de_corpus) == 240 and len(en_queries) == len(de_queries) == 1190
    assert en_qrels == de_qrels and en_queries.keys() == de_queries.keys()
    assert en_queries != de_queries


def test_scifact_dev_is_the_fixed_split(shared_data):
    from embedforge.data.beir import load_qrels
    from embedforge.data.splits import split_ids

    folder = shared_data / "retrieval" / "scifact"
    corpus, queries, qrels = load_scifact_dev(folder, TaskLimits())
    _, dev = split_ids(load_qrels(folder / "qrels" / "train.tsv"))
    assert sorted(queries) == dev and 120 < len(dev) < 210
    assert len(corpus) == 5183
    small_corpus, small_queries, _ = load_scifact_dev(folder, TaskLimits(max_queries=10, max_corpus_docs=50))
    assert len(small_queries) == 10 and set(small_queries) <= set(dev) and len(small_corpus) == 50


def test_every_offline_task_loads_within_limits():
    limits = TaskLimits(max_queries=3, max_corpus_docs=10, languages=["de", "en"], classification_experiments=1)
    for name in OFFLINE_TASKS:
        task = build_task(name, limits)
        task.load_data()
        assert task.metadata.name == name
        if name in ("xquad", "stsb-multi-mt-dev"):
            assert sorted(task.hf_subsets) == ["de", "en"]
        if name == "xquad-crosslingual":
            assert task.hf_subsets == ["de-en"]
            split = task.dataset["de-en"]["test"]
            assert len(split["queries"]) == 3 and len(split["corpus"]) == 10
            assert split["corpus"]["text"][0].isascii()  # English paragraphs, German questions


def test_offline_task_metadata_names_main_scores_splits_and_prompts():
    described = {
        name: (task.metadata.type, task.metadata.main_score, task.metadata.eval_splits, task.metadata.dataset["path"])
        for name, task in OFFLINE_TASKS.items()
    }
    assert described == {
        "scifact-dev": ("Retrieval", "ndcg_at_10", ["dev"], "local/shared-data/retrieval/scifact"),
        "cranfield": ("Retrieval", "ndcg_at_10", ["test"], "local/shared-data/retrieval/cranfield"),
        "stsb-dev": ("STS", "cosine_spearman", ["dev"], "local/shared-data/sts/stsbenchmark"),
        "stsb-multi-mt-dev": ("STS", "cosine_spearman", ["dev"], "local/shared-data/sts/stsb-multi-mt"),
        "banking77": ("Classification", "accuracy", ["test"], "local/shared-data/classification/banking77"),
        "xquad": ("Retrieval", "ndcg_at_10", ["test"], "local/shared-data/multilingual/xquad"),
        "xquad-crosslingual": ("Retrieval", "ndcg_at_10", ["test"], "local/shared-data/multilingual/xquad"),
    }
    # A retrieval instruction goes to queries only; an STS one to every text; none means no prompt.
    assert OFFLINE_TASKS["scifact-dev"].metadata.prompt == {"query": SCIFACT_INSTRUCTION}
    assert OFFLINE_TASKS["stsb-dev"].metadata.prompt == STS_INSTRUCTION
    assert OFFLINE_TASKS["xquad-crosslingual"].metadata.eval_langs["de-en"] == ["deu-Latn", "eng-Latn"]
    in_memory = InMemoryRetrieval("mine", {"d": Document(id="d", title="", text="x")}, {"q": "y"}, {"q": {"d": 1}}, split="dev")
    assert in_memory.metadata.prompt is None and in_memory.metadata.eval_splits == ["dev"]
    assert in_memory.metadata.eval_langs == ["eng-Latn"] and in_memory.metadata.main_score == "ndcg_at_10"


def test_unknown_and_hub_only_tasks_fail_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskUnavailableError, match="unknown task 'NoSuchTask'"):
        build_task("NoSuchTask")
    with pytest.raises(TaskUnavailableError, match="needs its dataset .* from the Hugging Face hub"):
        build_task("STS12")
