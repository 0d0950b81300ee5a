"""Hard-negative mining: the selection rule, both faiss indexes, and SciFact train qrels."""

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from embedforge.synthesis.mine import IndexConfig, build_index, select_negatives


def test_select_negatives_excludes_positives_and_applies_the_guard():
    docs = ["pos", "a", "b", "pos", "c", "d", "e"]
    candidates = [(0, 0.90), (1, 0.86), (2, 0.80), (3, 0.79), (4, 0.70), (5, 0.60), (6, 0.50)]
    chosen, dropped = select_negatives(candidates, docs, ["pos"], 0.9, max_score_ratio=0.95, count=3, rng=random.Random(0))
    assert dropped == {"positive": 2, "above_guard": 1}  # 0.86 >= 0.95 * 0.9 = 0.855
    assert len(chosen) == 3
    assert all(docs[i] != "pos" and score < 0.855 for i, score in chosen)
    assert [score for _, score in chosen] == sorted((score for _, score in chosen), reverse=True)
    everything, _ = select_negatives(candidates, docs, ["pos"], 0.9, max_score_ratio=0.95, count=10, rng=random.Random(0))
    assert [i for i, _ in everything] == [2, 4, 5, 6]
    same, _ = select_negatives(candidates, docs, ["pos"], 0.9, max_score_ratio=0.95, count=3, rng=random.Random(0))
    assert same == chosen


def test_flat_and_ivf_indexes_agree_on_clear_neighbours():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = build_index(vectors, IndexConfig(kind="auto", ivf_min_passages=1000))
    ivf = build_index(vectors, IndexConfig(kind="auto", ivf_min_passages=100, ivf_lists=8, ivf_probe=8))
    assert type(flat).__name__ == "IndexFlatIP" and type(ivf).__name__ == "IndexIVFFlat"
    _, flat_ids = flat.search(vectors[:20], 1)
    _, ivf_ids = ivf.search(vectors[:20], 1)
    assert (flat_ids[:, 0] == np.arange(20)).all() and (ivf_ids[:, 0] == np.arange(20)).all()


@pytest.fixture(scope="module")
def scifact_subset(shared_data, tmp_path_factory):
    """The first 25 queries of the fixed SciFact train split, their documents and 80 others."""
    from embedforge.data.beir import load_qrels
    from embedforge.data.splits import split_ids

    folder = tmp_path_factory.mktemp("scifact-subset")
    qrels = load_qrels(shared_data / "retrieval/scifact/qrels/train.tsv")
    train, _ = split_ids(sorted(qrels))
    queries = sorted(train)[:25]
    positives = {doc for q in queries for doc in qrels[q]}
    lines = (shared_data / "retrieval/scifact/corpus.jsonl").read_text().splitlines()
    others = [line for line in lines if json.loads(line)["_id"] not in positives][:80]
    chosen = [line for line in lines if json.loads(line)["_id"] in positives] + others
    (folder / "corpus.jsonl").write_text("\n".join(chosen) + "\n")
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{doc}\t{rel}" for q in queries for doc, rel in qrels[q].items()]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    return folder, {q: set(qrels[q]) for q in queries}


def check_mined(folder, qrels, stats):
    from embedforge.synthesis.shards import PAIR_SCHEMA

    table = pq.read_table(str(folder / "pairs"))
    assert table.schema.equals(PAIR_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    judged = sum(len(docs) for docs in qrels.values())
    assert stats["labelled"] == {"judged": judged, "pairs": judged, "missing_document": 0}
    assert len(rows) == judged and len({r["id"] for r in rows}) == judged
    for row in rows:
        query_id = next(q for q, docs in qrels.items() if row["source_doc_id"] in docs and set(row["positive_ids"]) == docs)
        negative_docs = {negative_id.split("#")[0] for negative_id in row["negative_ids"]}
        assert not negative_docs & qrels[query_id], "a mined negative is a labelled positive"
        assert all(score < 0.95 * row["teacher_score"] for score in row["negative_scores"]), "a negative breaks the 0.95 guard"
        assert len(row["negatives"]) == len(row["negative_ids"]) == len(row["negative_scores"]) <= 5
    assert sum(len(r["negatives"]) for r in rows) > 3 * len(rows)
    assert stats["candidates"]["positive"] > 0 and stats["candidates"]["above_guard"] >= 0
    assert (folder / "report.md").exists() and (folder / "teacher_scores.png").stat().st_size > 1000
    return rows


@pytest.mark.slow
def test_mining_scifact_train_qrels(local_ray, shared_data, scifact_subset, tmp_path):
    import shutil

    from embedforge.synthesis.mine import MineConfig, run_mine

    folder, qrels = scifact_subset
    config = MineConfig.model_validate(
        {
            "output_dir": str(tmp_path / "mined"),
            "labelled": {"queries": str(shared_data / "retrieval/scifact/queries.jsonl"), "qrels": str(folder / "train.tsv")},
            "corpus": {"paths": [str(folder / "corpus.jsonl")], "chunk_tokens": 512},
            "teacher": {"model": "all-MiniLM-L6-v2", "batch_size": 64, "num_cpus": 2.0},
            "index": {"kind": "flat"},
            "top_k": 30,
            "num_negatives": 5,
            "max_score_ratio": 0.95,
            "shard_size": 16,
        }
    )
    stats = run_mine(config)
    flat_rows = check_mined(tmp_path / "mined", qrels, stats)
    again = run_mine(config)  # resumed: every shard is done, nothing is redone
    assert again["pairs"] == stats["pairs"] and pq.read_table(str(tmp_path / "mined" / "pairs")).num_rows == len(flat_rows)

    # the IVF index, reusing the cached corpus vectors (the cache is part of resumption)
    (tmp_path / "ivf").mkdir()
    for cached in (tmp_path / "mined").glob("corpus_vectors-*.npy"):
        shutil.copy(cached, tmp_path / "ivf" / cached.name)
    ivf_config = config.model_copy(update={"output_dir": tmp_path / "ivf", "index": IndexConfig(kind="ivf", ivf_lists=8, ivf_probe=4)})
    check_mined(tmp_path / "ivf", qrels, run_mine(ivf_config))


def test_pair_texts_keeps_passage_order_and_encodes_each_text_once():
    from embedforge.synthesis.mine import PairTexts

    texts = PairTexts(["a", "b", "a"])
    assert texts.add("a", None) == 0 and texts.add("b", None) == 1
    assert texts.add("a", "Find it") == 3 and texts.add("a", "Find it") == 3 and texts.add("q", None) == 4
    assert texts.texts == ["a", "b", "a", "a", "q"] and texts.instructions == [None, None, None, "Find it", None]


@pytest.mark.slow
def test_one_teacher_pass_matches_the_pair_scorer_and_the_embedder(local_ray, tiny_embedder_dir, tmp_path):
    """The fast path (corpus, queries and positives in one length-sorted Ray Data pass, positives
    looked up among the corpus vectors) against the reference: PairScorer and Embedder.encode
    in this process, with a teacher that uses instructions (both sides on an sts row)."""
    import pandas as pd

    from embedforge.models.embedder import Embedder
    from embedforge.synthesis.mine import MineConfig, embed_corpus_and_pairs
    from embedforge.synthesis.teacher import PairScorer

    passages = [{"passage_id": f"d{i}#0", "doc_id": f"d{i}", "passage": text} for i, text in enumerate(
        ["Aspirin lowers the risk of heart attack.", "Cells divide by mitosis, a process with four phases and many checkpoints.", "Short.", "Vitamin D comes from sunlight."]
    )]
    rows = [
        {"query": "does aspirin help the heart", "positive": passages[0]["passage"], "instruction": None, "task_type": "retrieval"},
        {"query": "how do cells divide", "positive": passages[1]["passage"], "instruction": "Find the biology passage", "task_type": "retrieval"},
        {"query": "Sunlight makes vitamin D.", "positive": passages[3]["passage"], "instruction": "Find the same claim", "task_type": "sts"},
        {"query": "what is not in the corpus", "positive": "A positive that is no corpus passage at all.", "instruction": None, "task_type": "retrieval"},
        {"query": None, "positive": passages[2]["passage"], "instruction": None, "task_type": "retrieval"},
    ]
    config = MineConfig.model_validate(
        {"output_dir": str(tmp_path), "corpus": {"paths": [str(tmp_path / "unused.jsonl")]}, "pairs_dir": str(tmp_path), "teacher": {"model": str(tiny_embedder_dir), "batch_size": 2}}
    )
    reference = PairScorer(str(tiny_embedder_dir), batch_size=2, embed_queries=True)(pd.DataFrame(rows))
    expected_corpus = Embedder.load(tiny_embedder_dir).encode([p["passage"] for p in passages], batch_size=2)
    for attempt in ("embedded", "corpus from the cache"):
        corpus, scored, queries, guard = embed_corpus_and_pairs(passages, rows, config, tmp_path)
        np.testing.assert_allclose(corpus, expected_corpus, atol=1e-4, err_msg=attempt)
        np.testing.assert_allclose(queries, np.stack(reference["embedding"]), atol=1e-4, err_msg=attempt)
        np.testing.assert_allclose([r["teacher_score"] for r in scored], reference["teacher_score"], atol=1e-4, err_msg=attempt)
        np.testing.assert_allclose(guard, reference["document_score"], atol=1e-4, err_msg=attempt)
        assert [r["teacher_model"] for r in scored] == [m if isinstance(m, str) else None for m in reference["teacher_model"]]  # pandas holds None as NaN
        assert scored[2]["teacher_score"] != pytest.approx(float(guard[2]))  # sts: instruction on both sides, the guard bare
    assert len(list(tmp_path.glob("corpus_vectors-*.npy"))) == 1


def test_auto_index_is_ivf_above_its_threshold_and_finds_the_exact_top_10_on_real_vectors(minilm_dir, shared_data):
    """IVF against exact search on MiniLM vectors of 400 SciFact titles and 100 real queries:
    ``auto`` picks IVF from ``ivf_min_passages`` on and exact search below; with 32 of its
    4 sqrt(N) = 80 cells probed, IVF's top 10 overlaps the exact top 10 by 0.95 or more."""
    from embedforge.models.embedder import Embedder

    titles = [json.loads(line)["title"] for line in (shared_data / "retrieval/scifact/corpus.jsonl").read_text().splitlines()[:400]]
    queries = [json.loads(line)["text"] for line in (shared_data / "retrieval/scifact/queries.jsonl").read_text().splitlines()[:100]]
    embedder = Embedder.load(minilm_dir, device="cpu")
    passages, questions = embedder.encode(titles, batch_size=64), embedder.encode(queries, batch_size=64)
    assert type(build_index(passages[:200], IndexConfig(kind="auto", ivf_min_passages=300))).__name__ == "IndexFlatIP"
    _, exact = build_index(passages, IndexConfig(kind="flat")).search(questions, 10)

    def overlap(probe: int) -> float:
        index = build_index(passages, IndexConfig(kind="auto", ivf_min_passages=300, ivf_probe=probe))
        assert type(index).__name__ == "IndexIVFFlat" and index.nlist == 80
        _, found = index.search(questions, 10)
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)]))

    assert overlap(32) >= 0.95
    assert overlap(4) < 0.8  # too few probes miss neighbours: the measure can fail
