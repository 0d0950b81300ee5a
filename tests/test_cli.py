"""The ``embedforge`` command line, run as a user runs it: a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedforge.models.embedder import Embedder
from embedforge.models.reranker import load_reranker

EMBEDFORGE = [sys.executable, "-m", "embedforge.cli"]


def embedforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EMBEDFORGE, *map(str, args)], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": text}) for text in ["tides and the moon", "bananas", "ocean gravity"]) + "\n")
    return path


def test_help_lists_exactly_the_implemented_commands():
    result = embedforge("--help")
    assert result.returncode == 0
    from embedforge.cli import COMMANDS

    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert listed == list(COMMANDS)
    for name in COMMANDS:
        assert embedforge(name, "--help").returncode == 0


def test_tiny_model_then_encode_matches_sentence_transformers(tmp_path, texts_file):
    model = tmp_path / "tiny"
    assert embedforge("tiny-model", "--kind", "embedder", "--out", model).returncode == 0
    output = tmp_path / "vectors.npy"
    result = embedforge("encode", "--model", model, "--input", texts_file, "--output", output, "--dimensions", "32", "--query")
    assert result.returncode == 0, result.stderr
    vectors = np.load(output)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 32)
    reference = SentenceTransformer(str(model), device="cpu", truncate_dim=32)
    texts = ["tides and the moon", "bananas", "ocean gravity"]
    np.testing.assert_allclose(vectors, reference.encode(texts, prompt_name="query", normalize_embeddings=True), atol=1e-5)


def test_encode_plain_text_file_with_packaged_minilm(tmp_path, minilm_dir):
    texts = tmp_path / "texts.txt"
    texts.write_text("first line\nsecond line\n")
    output = tmp_path / "out.npy"
    assert embedforge("encode", "--model", "all-MiniLM-L6-v2", "--input", texts, "--output", output).returncode == 0
    np.testing.assert_allclose(np.load(output), SentenceTransformer(str(minilm_dir), device="cpu").encode(["first line", "second line"]), atol=1e-5)


def test_score_writes_reranker_scores_in_input_order(tmp_path, texts_file, tiny_reranker_dir):
    output = tmp_path / "scores.json"
    result = embedforge("score", "--model", tiny_reranker_dir, "--query", "what moves tides", "--input", texts_file, "--output", output)
    assert result.returncode == 0, result.stderr
    scores = json.loads(output.read_text())
    expected = load_reranker(tiny_reranker_dir, device="cpu").score("what moves tides", ["tides and the moon", "bananas", "ocean gravity"])
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_merge_two_checkpoints_into_a_loadable_model(tmp_path, texts_file):
    for seed in (0, 1):
        assert embedforge("tiny-model", "--kind", "embedder", "--out", tmp_path / f"ckpt{seed}", "--seed", seed).returncode == 0
    merged = tmp_path / "merged"
    result = embedforge("merge", "--method", "slerp", "--checkpoints", tmp_path / "ckpt0", tmp_path / "ckpt1", "--weights", "1", "1", "--output", merged)
    assert result.returncode == 0, result.stderr
    vectors = Embedder.load(merged, device="cpu").encode(["tides"])
    first = Embedder.load(tmp_path / "ckpt0", device="cpu").encode(["tides"])
    assert vectors.shape == (1, 64) and not np.allclose(vectors, first, atol=1e-4)
    np.testing.assert_allclose(SentenceTransformer(str(merged), device="cpu").encode(["tides"]), vectors, atol=1e-5)


def test_bad_input_file_gives_a_clear_error(tmp_path, tiny_embedder_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    result = embedforge("encode", "--model", tiny_embedder_dir, "--input", bad, "--output", tmp_path / "x.npy")
    assert result.returncode == 2
    assert f"{bad}:2: expected an object with a string 'text' field" in result.stderr
    good = tmp_path / "good.txt"
    good.write_text("fine\n")
    missing = embedforge("encode", "--model", tmp_path / "nowhere", "--input", good, "--output", tmp_path / "x.npy")
    assert missing.returncode == 2 and "model folder not found" in missing.stderr
