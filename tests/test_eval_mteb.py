"""The mteb wrappers and ``run_evaluate``, with real models on small subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mteb.types import PromptType

from embedforge.eval.mteb_encoder import MtebEncoder
from embedforge.eval.tasks import TaskLimits
from embedforge.eval.tasks.scifact import SCIFACT_INSTRUCTION, SciFactDev
from embedforge.eval.tasks.sts import STS_INSTRUCTION, STSBenchmarkDev
from embedforge.models.embedder import Embedder

TEXTS = ["tides follow the moon", "bananas are rich in potassium", "gravity of the ocean"]


def batches(texts):
    return [{"text": texts[:2]}, {"text": texts[2:]}]


@pytest.fixture(scope="module")
def tiny_embedder(tiny_embedder_dir):
    return Embedder.load(tiny_embedder_dir, device="cpu")


def test_instructions_go_on_queries_for_retrieval_and_both_sides_for_sts(tiny_embedder):
    encoder = MtebEncoder(tiny_embedder)
    assert encoder.use_instructions  # a Qwen3 embedder saved with a default instruction
    retrieval, sts = SciFactDev.metadata, STSBenchmarkDev.metadata
    query = encoder.encode(batches(TEXTS), task_metadata=retrieval, hf_split="dev", hf_subset="default", prompt_type=PromptType.query)
    document = encoder.encode(batches(TEXTS), task_metadata=retrieval, hf_split="dev", hf_subset="default", prompt_type=PromptType.document)
    symmetric = encoder.encode(batches(TEXTS), task_metadata=sts, hf_split="dev", hf_subset="default", prompt_type=None)
    np.testing.assert_allclose(query, tiny_embedder.encode(TEXTS, instruction=SCIFACT_INSTRUCTION), atol=1e-6)
    np.testing.assert_allclose(document, tiny_embedder.encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(symmetric, tiny_embedder.encode(TEXTS, instruction=STS_INSTRUCTION), atol=1e-6)
    assert not np.allclose(query, document)
    overridden = MtebEncoder(tiny_embedder, instructions={"scifact-dev": "Find evidence"})
    np.testing.assert_allclose(
        overridden.encode(batches(TEXTS), task_metadata=retrieval, hf_split="dev", hf_subset="default", prompt_type=PromptType.query),
        tiny_embedder.encode(TEXTS, instruction="Find evidence"),
        atol=1e-6,
    )
    meta = encoder.mteb_model_meta
    assert meta.name == "embedforge/model" and meta.embed_dim == tiny_embedder.hidden_size and meta.similarity_fn_name == "cosine"


def test_models_without_instruction_training_get_none(minilm_dir):
    encoder = MtebEncoder(Embedder.load(minilm_dir, device="cpu"))
    assert not encoder.use_instructions
    assert encoder.instruction_for(SciFactDev.metadata, PromptType.query) is None
    similarity = encoder.similarity(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32))
    np.testing.assert_allclose(similarity.numpy(), np.eye(3))


@pytest.mark.slow
def test_mteb_with_our_encoder_equals_our_own_evaluator(minilm_dir, shared_data):
    import mteb

    from embedforge.eval.retrieval import evaluate_retrieval
    from embedforge.eval.tasks.scifact import load_scifact_dev

    limits = TaskLimits(max_queries=20, max_corpus_docs=60)
    embedder = Embedder.load(minilm_dir, device="cpu")
    corpus, queries, qrels = load_scifact_dev(shared_data / "retrieval" / "scifact", limits)
    ours = evaluate_retrieval(embedder, corpus, queries, qrels)
    result = mteb.evaluate(MtebEncoder(embedder), [SciFactDev(limits)], cache=None, co2_tracker=False, show_progress_bar=False)
    scores = result.task_results[0].scores["dev"][0]
    assert scores["ndcg_at_10"] == pytest.approx(ours["ndcg_at_10"], abs=1e-4)
    assert scores["recall_at_100"] == pytest.approx(ours["recall_at_100"], abs=1e-4)


def test_per_query_scores_average_to_the_mean_over_subsets():
    """Subsets of different sizes: each query is weighted so the plain mean is mteb's mean of subset means."""
    from embedforge.eval.runner import take_query_scores
    from embedforge.eval.tasks.xquad import XQuADRetrieval

    task = XQuADRetrieval(TaskLimits(languages=["de", "es"]))
    task.query_scores = {"test/de": {"a": 1.0, "b": 0.0}, "test/es": {"c": 1.0}}  # subset means 0.5 and 1.0
    scores = take_query_scores(task)
    assert set(scores) == {"test/de/a", "test/de/b", "test/es/c"}
    assert sum(scores.values()) / len(scores) == pytest.approx(0.75)
    assert take_query_scores(task) is None  # taken: the next run's scores start empty


@pytest.mark.slow
def test_run_evaluation_on_every_offline_task_with_reranker(tiny_embedder_dir, tiny_reranker_dir, tmp_path):
    from scipy.stats import spearmanr

    from embedforge.eval.runner import run_evaluate
    from embedforge.eval.settings import EvaluateConfig
    from embedforge.eval.tasks import OFFLINE_TASKS

    settings = EvaluateConfig(
        tasks=list(OFFLINE_TASKS),
        limits=TaskLimits(
            max_queries=3, max_corpus_docs=8, languages=["de"], classification_experiments=1, classification_samples_per_label=2
        ),
    )
    runs = run_evaluate(tiny_embedder_dir, tmp_path, settings, reranker=tiny_reranker_dir, device="cpu", label="tiny")
    retrieval = ["scifact-dev", "cranfield", "xquad", "xquad-crosslingual"]
    assert list(runs) == ["tiny", "tiny+reranker"]
    assert list(runs["tiny"]) == list(OFFLINE_TASKS) and list(runs["tiny+reranker"]) == retrieval
    results = json.loads((tmp_path / "results.json").read_text())  # one flat mapping: reranked tasks as "<task>+reranker"
    flat = {**runs["tiny"], **{f"{task}+reranker": scores for task, scores in runs["tiny+reranker"].items()}}
    assert results == {task: scores.metrics for task, scores in flat.items()}
    assert list(results) == list(OFFLINE_TASKS) + [f"{task}+reranker" for task in retrieval]
    main_metric = {"stsb-dev": "cosine_spearman", "stsb-multi-mt-dev": "cosine_spearman", "banking77": "accuracy"}
    for task, metrics in results.items():
        name = main_metric.get(task.removesuffix("+reranker"), "ndcg_at_10")
        assert metrics["main_score"] == pytest.approx(metrics[name]), task
    for task in retrieval:
        dense, reranked = results[task], results[f"{task}+reranker"]
        # the reranker reorders the same top-100 candidates of an 8-document corpus
        assert reranked["recall_at_100"] == pytest.approx(dense["recall_at_100"])
        assert 0.0 <= reranked["ndcg_at_10"] <= 1.0
    by_subset = json.loads((tmp_path / "results_by_subset.json").read_text())
    assert list(by_subset["xquad-crosslingual"]) == ["test/de-en"]
    query_scores = json.loads((tmp_path / "query_scores.json").read_text())  # the gates' per-query scores
    assert set(query_scores) == set(retrieval) | {f"{task}+reranker" for task in retrieval}
    for task, scores in query_scores.items():
        assert sum(scores.values()) / len(scores) == pytest.approx(results[task]["ndcg_at_10"], abs=1e-5), task  # mteb rounds to 5 places
    assert list(query_scores["xquad-crosslingual"])[0].startswith("test/de-en/")
    assert query_scores == {task: scores.per_query for task, scores in flat.items() if scores.per_query}  # what the gates get
    pair_scores = json.loads((tmp_path / "pair_scores.json").read_text())  # the STS gates' per-pair scores
    assert list(pair_scores) == ["stsb-dev", "stsb-multi-mt-dev"] and list(pair_scores["stsb-multi-mt-dev"]) == ["dev/de"]
    for task, subsets in pair_scores.items():
        rho = [spearmanr(pairs["predicted"], pairs["gold"])[0] for pairs in subsets.values()]
        assert all(len(pairs["gold"]) == 3 for pairs in subsets.values())
        assert sum(rho) / len(rho) == pytest.approx(results[task]["cosine_spearman"], abs=1e-5), task
    assert pair_scores == {task: scores.per_pair for task, scores in flat.items() if scores.per_pair}
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {task} |" in table for task in OFFLINE_TASKS)
    assert (tmp_path / "main_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_command_writes_results_and_rejects_unknown_tasks(tiny_embedder_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "embedforge.cli", "evaluate", "--model", str(tiny_embedder_dir), "--output", str(tmp_path)]
    ok = subprocess.run([*command, "--tasks", "cranfield", "--max-queries", "3", "--max-corpus-docs", "10"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "| cranfield | ndcg_at_10 |" in ok.stdout
    assert set(json.loads((tmp_path / "results.json").read_text())) == {"cranfield"}
    bad = subprocess.run([*command, "--tasks", "cranfield,NoSuchTask"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown task 'NoSuchTask'" in bad.stderr
