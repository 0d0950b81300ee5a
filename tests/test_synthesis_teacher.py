"""The teacher formats each query with its row's instruction, and the filter re-scores what another teacher scored."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from embedforge.synthesis.teacher import PairScorer, instruction_policy, reusable_score, teacher_identity

DEFAULT = "Given a web search query, retrieve relevant passages that answer the query"
ROWS = [
    {"query": "how does aspirin prevent heart attacks", "positive": "Aspirin\nLow-dose aspirin inhibits platelet aggregation and lowers the risk of myocardial infarction."},
    {"query": "effects of statins on cholesterol", "positive": "Statins\nStatins block HMG-CoA reductase, reducing LDL cholesterol synthesis in the liver."},
]
INSTRUCTIONS = ["Given a medical question, retrieve passages that answer it", "Identify the topic or theme of the given text"]


@pytest.fixture(scope="module")
def instructed_teacher(tmp_path_factory, minilm_dir):
    """MiniLM saved with a default instruction: a teacher that was trained with instructions."""
    from embedforge.models.embedder import Embedder

    embedder = Embedder.load(minilm_dir)
    embedder.settings = embedder.settings.model_copy(update={"default_instruction": DEFAULT})
    return embedder.save(tmp_path_factory.mktemp("instructed-teacher"))


@pytest.fixture(scope="module")
def embedders(instructed_teacher, minilm_dir):
    from embedforge.models.embedder import Embedder

    return {"instructed": Embedder.load(instructed_teacher), "minilm": Embedder.load(minilm_dir)}


def cosine(embedder, query, positive, *, query_instruction=None, positive_instruction=None):
    """The reference: one direct ``Embedder.encode`` per side; ``None`` encodes the text bare."""
    q = embedder.encode([query], query=query_instruction is not None, instruction=query_instruction)[0]
    d = embedder.encode([positive], query=positive_instruction is not None, instruction=positive_instruction)[0]
    return float(q @ d)


def frame(task_types, instructions=INSTRUCTIONS, **columns):
    return pd.DataFrame({"query": [r["query"] for r in ROWS], "positive": [r["positive"] for r in ROWS], "instruction": instructions, "task_type": task_types, **columns})


def test_instruction_policy_and_identity():
    assert instruction_policy(DEFAULT, "auto", None).for_row("X", "retrieval") == ("X", None)
    assert instruction_policy(DEFAULT, "auto", None).for_row(None, "retrieval") == (DEFAULT, None)
    assert instruction_policy(DEFAULT, "auto", "Fallback").for_row(float("nan"), "sts") == ("Fallback", "Fallback")
    assert instruction_policy(DEFAULT, "auto", None).for_row("X", "bitext") == ("X", "X")
    assert instruction_policy(None, "auto", "Fallback").for_row("X", "sts") == (None, None)
    assert instruction_policy(None, True, None).for_row("X", "retrieval") == ("X", None)
    assert instruction_policy(DEFAULT, False, None).for_row("X", "sts") == (None, None)
    assert teacher_identity("all-MiniLM-L6-v2", instruction_policy(None, "auto", None)) == "all-MiniLM-L6-v2 | no instructions"
    assert teacher_identity("all-MiniLM-L6-v2", instruction_policy(None, True, None)) == "all-MiniLM-L6-v2 | row instructions, else None"
    assert reusable_score(0.8, "t", "t") and not reusable_score(0.8, "u", "t") and not reusable_score(float("nan"), "t", "t") and not reusable_score(None, "t", "t")
    assert not reusable_score(0.8, pd.NA, "t") and not reusable_score(pd.NA, "t", "t") and instruction_policy(DEFAULT, "auto", None).for_row(pd.NA, pd.NA) == (DEFAULT, None)


def test_instructed_teacher_scores_each_row_with_its_own_instruction(instructed_teacher, embedders):
    embedder = embedders["instructed"]
    out = PairScorer(str(instructed_teacher))(frame(["retrieval", "retrieval"]))
    for i, row in enumerate(ROWS):
        expected = cosine(embedder, row["query"], row["positive"], query_instruction=INSTRUCTIONS[i])
        assert abs(out["teacher_score"].iloc[i] - expected) < 1e-6
        assert abs(expected - cosine(embedder, row["query"], row["positive"])) > 1e-3  # the bare query scores differently
    other = cosine(embedder, ROWS[0]["query"], ROWS[0]["positive"], query_instruction=INSTRUCTIONS[1])
    assert abs(other - out["teacher_score"].iloc[0]) > 1e-4  # the two instructions give different scores
    assert set(out["teacher_model"]) == {f"{instructed_teacher.resolve()} | row instructions, else {DEFAULT!r}"}

    # a row without an instruction falls back to query_instruction, then to the model's default
    defaults = PairScorer(str(instructed_teacher))(frame(["retrieval", "retrieval"], instructions=[None, None]))["teacher_score"]
    assert abs(defaults.iloc[0] - cosine(embedder, ROWS[0]["query"], ROWS[0]["positive"], query_instruction=DEFAULT)) < 1e-6
    fallback = PairScorer(str(instructed_teacher), query_instruction="Find the passage")(frame(["retrieval", "retrieval"], instructions=[None, "Other"]))["teacher_score"]
    assert abs(fallback.iloc[0] - cosine(embedder, ROWS[0]["query"], ROWS[0]["positive"], query_instruction="Find the passage")) < 1e-6
    assert abs(fallback.iloc[1] - cosine(embedder, ROWS[1]["query"], ROWS[1]["positive"], query_instruction="Other")) < 1e-6


def test_minilm_keeps_queries_bare_unless_told(embedders):
    embedder = embedders["minilm"]
    out = PairScorer("all-MiniLM-L6-v2")(frame(["retrieval", "sts"]))
    for i, row in enumerate(ROWS):
        assert abs(out["teacher_score"].iloc[i] - cosine(embedder, row["query"], row["positive"])) < 1e-6
    assert set(out["teacher_model"]) == {"all-MiniLM-L6-v2 | no instructions"}
    forced = PairScorer("all-MiniLM-L6-v2", use_instructions=True)(frame(["retrieval", "retrieval"]))["teacher_score"]
    assert abs(forced.iloc[0] - cosine(embedder, ROWS[0]["query"], ROWS[0]["positive"], query_instruction=INSTRUCTIONS[0])) < 1e-6


def test_symmetric_tasks_get_the_instruction_on_both_sides(instructed_teacher, embedders):
    embedder = embedders["instructed"]
    out = PairScorer(str(instructed_teacher), embed_queries=True)(frame(["sts", "retrieval"], instructions=[INSTRUCTIONS[0], INSTRUCTIONS[0]]))
    both = cosine(embedder, ROWS[0]["query"], ROWS[0]["positive"], query_instruction=INSTRUCTIONS[0], positive_instruction=INSTRUCTIONS[0])
    query_only = cosine(embedder, ROWS[0]["query"], ROWS[0]["positive"], query_instruction=INSTRUCTIONS[0])
    assert abs(out["teacher_score"].iloc[0] - both) < 1e-6 and abs(both - query_only) > 1e-3
    # document_score: the positive as a bare document, the space mining's corpus search scores in
    assert abs(out["document_score"].iloc[0] - query_only) < 1e-6
    assert out["document_score"].iloc[1] == out["teacher_score"].iloc[1]
    query_vector = embedder.encode([ROWS[1]["query"]], query=True, instruction=INSTRUCTIONS[0])[0]
    assert np.allclose(out["embedding"].iloc[1], query_vector, atol=1e-6)


def test_reuse_keeps_only_this_teachers_scores(instructed_teacher, embedders):
    scorer = PairScorer(str(instructed_teacher), reuse_scores=True)
    batch = frame(["retrieval", "retrieval"], teacher_score=[0.123, 0.456], teacher_model=[scorer.identity, "all-MiniLM-L6-v2 | no instructions"])
    out = scorer(batch)
    assert out["teacher_score"].iloc[0] == np.float32(0.123)
    expected = cosine(embedders["instructed"], ROWS[1]["query"], ROWS[1]["positive"], query_instruction=INSTRUCTIONS[1])
    assert abs(out["teacher_score"].iloc[1] - expected) < 1e-6
    assert list(out["teacher_model"]) == [scorer.identity, scorer.identity]


def write_pairs(folder, rows):
    from embedforge.synthesis.shards import check_manifest, write_shard

    check_manifest(folder, {"stage": "synthesize", "fingerprint": "test", "records": len(rows)})
    write_shard(folder, 0, rows, [], {"attempted": len(rows), "accepted": len(rows), "rejected": {}})


@pytest.mark.slow
def test_filter_rescores_rows_another_teacher_scored(local_ray, instructed_teacher, embedders, tmp_path):
    from embedforge.synthesis.filter import FilterConfig, run_filter

    identity = teacher_identity(str(instructed_teacher), instruction_policy(DEFAULT, "auto", None))
    extra = {"query": "which vitamin deficiency causes scurvy", "positive": "Scurvy\nScurvy results from a lack of vitamin C in the diet."}
    rows = [
        dict(ROWS[0], id="a", instruction=INSTRUCTIONS[0], task_type="retrieval", teacher_score=0.9, teacher_model=identity),
        dict(ROWS[1], id="b", instruction=INSTRUCTIONS[1], task_type="retrieval", teacher_score=0.99, teacher_model="all-MiniLM-L6-v2 | no instructions"),
        dict(extra, id="c", instruction=INSTRUCTIONS[0], task_type="sts", teacher_score=0.5, teacher_model=None),
    ]
    write_pairs(tmp_path / "synth", rows)
    config = FilterConfig.model_validate(
        {
            "input_dir": str(tmp_path / "synth"),
            "output_dir": str(tmp_path / "filtered"),
            "rules": {"min_teacher_score": -1.0, "min_query_words": 1, "near_duplicate_jaccard": None},
            "teacher": {"model": str(instructed_teacher), "num_cpus": 1.0},
        }
    )
    stats = run_filter(config)
    assert stats["scoring"] == {"teacher_model": identity, "reused": 1, "recomputed": 2}
    assert stats["counts"]["filter"]["teacher scores reused"] == 1
    kept = {row["id"]: row for row in pq.read_table(str(tmp_path / "filtered" / "pairs")).to_pylist()}
    embedder = embedders["instructed"]
    assert kept["a"]["teacher_score"] == np.float32(0.9)  # recorded by this teacher: kept as is
    assert abs(kept["b"]["teacher_score"] - cosine(embedder, ROWS[1]["query"], ROWS[1]["positive"], query_instruction=INSTRUCTIONS[1])) < 1e-6
    symmetric = cosine(embedder, extra["query"], extra["positive"], query_instruction=INSTRUCTIONS[0], positive_instruction=INSTRUCTIONS[0])
    assert abs(kept["c"]["teacher_score"] - symmetric) < 1e-6
    assert {row["teacher_model"] for row in kept.values()} == {identity}
    assert json.loads((tmp_path / "filtered" / "stats.json").read_text())["scoring"]["recomputed"] == 2


@pytest.mark.slow
def test_mining_guard_compares_instructed_queries_in_the_corpus_space(local_ray, instructed_teacher, embedders, tmp_path):
    from embedforge.synthesis.mine import MineConfig, run_mine

    documents = [
        ("d1", "Aspirin", "Low-dose aspirin inhibits platelet aggregation and lowers the risk of myocardial infarction."),
        ("d2", "Statins", "Statins block HMG-CoA reductase, reducing LDL cholesterol synthesis in the liver."),
        ("d3", "Ibuprofen", "Ibuprofen is a nonsteroidal anti-inflammatory drug used for pain and fever."),
        ("d4", "Warfarin", "Warfarin is an anticoagulant that prevents blood clots by blocking vitamin K."),
        ("d5", "Scurvy", "Scurvy results from a lack of vitamin C in the diet."),
        ("d6", "Insulin", "Insulin is a hormone that lets cells take up glucose from the blood."),
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in documents))
    passages = {i: f"{t}\n{x}" for i, t, x in documents}
    rows = [
        dict(ROWS[0], positive=passages["d1"], id="a", instruction=INSTRUCTIONS[0], task_type="retrieval", source_doc_id="d1", positive_ids=["d1"]),
        dict(ROWS[1], positive=passages["d2"], id="b", instruction=INSTRUCTIONS[0], task_type="sts", source_doc_id="d2", positive_ids=["d2"]),
    ]
    write_pairs(tmp_path / "pairs", rows)
    config = MineConfig.model_validate(
        {
            "output_dir": str(tmp_path / "mined"),
            "pairs_dir": str(tmp_path / "pairs"),
            "corpus": {"paths": [str(corpus)]},
            "teacher": {"model": str(instructed_teacher), "num_cpus": 1.0},
            "index": {"kind": "flat"},
            "top_k": 5,
            "num_negatives": 5,
            "max_score_ratio": 0.6,
        }
    )
    run_mine(config)
    mined = {row["id"]: row for row in pq.read_table(str(tmp_path / "mined" / "pairs")).to_pylist()}
    embedder = embedders["instructed"]
    for row in rows:
        # every candidate is an instructed query against a bare passage; the guard compares them
        # with the positive scored the same way (query-side instruction only, even for sts)
        guard = cosine(embedder, row["query"], row["positive"], query_instruction=row["instruction"])
        scores = {i: cosine(embedder, row["query"], passages[i], query_instruction=row["instruction"]) for i in passages if i != row["source_doc_id"]}
        out = mined[row["id"]]
        assert sorted(n.split("#")[0] for n in out["negative_ids"]) == sorted(i for i, score in scores.items() if score < 0.6 * guard)
        for negative_id, score in zip(out["negative_ids"], out["negative_scores"]):
            assert abs(score - scores[negative_id.split("#")[0]]) < 1e-5
    assert abs(mined["a"]["teacher_score"] - cosine(embedder, ROWS[0]["query"], passages["d1"], query_instruction=INSTRUCTIONS[0])) < 1e-6
    both = cosine(embedder, ROWS[1]["query"], passages["d2"], query_instruction=INSTRUCTIONS[0], positive_instruction=INSTRUCTIONS[0])
    assert abs(mined["b"]["teacher_score"] - both) < 1e-6  # the stored score is the teacher's own, both sides instructed
    assert {row["teacher_model"] for row in mined.values()} == {teacher_identity(str(instructed_teacher), instruction_policy(DEFAULT, "auto", None))}
