"""The pure parts of serving: continuous batching, API keys, response shaping, settings."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import embedforge
from embedforge.config import ConfigError, parse_config
from embedforge.serving.batching import ContinuousBatcher, TokenRow, forward_groups, pad_rows, unpad
from embedforge.serving.keys import bearer_token, digest, is_authorized, load_key_digests
from embedforge.serving.schemas import encode_embedding, ranked_results, truncate_rows
from embedforge.serving.settings import ServeSettings, model_name, served_names


@pytest.mark.parametrize("module", ["embedforge.serving.api", "embedforge.serving.app"])
def test_the_http_layer_and_the_serve_config_entry_import_without_torch(module):
    """The shared HTTP layer (and what Serve configs import) loads no torch; only model replicas do."""
    source_root = str(Path(embedforge.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))}
    code = f"import {module}, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


def test_forward_groups_sort_longest_first_and_cut_on_length_drops_and_the_token_budget():
    lengths = [5, 40, 30, 6, 21]
    assert forward_groups(lengths, max_tokens=1000) == [[1, 2, 4], [3, 0]]
    assert forward_groups(lengths, max_tokens=80) == [[1, 2], [4], [3, 0]]  # 3 x 40 > 80
    assert forward_groups([7] * 5, max_tokens=14) == [[0, 1], [2, 3], [4]]
    assert sorted(i for group in forward_groups(lengths, 80) for i in group) == list(range(5))
    assert forward_groups([], 10) == []


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_rows_and_unpad_round_trip(side):
    rows = [TokenRow([5, 6, 7], extra={"token_type_ids": [0, 0, 1]}), TokenRow([8], extra={"token_type_ids": [1]})]
    batch = pad_rows(rows, pad_id=0, side=side)
    expected_mask = [[1, 1, 1], [0, 0, 1]] if side == "left" else [[1, 1, 1], [1, 0, 0]]
    assert batch["attention_mask"].tolist() == expected_mask
    assert batch["input_ids"][1].tolist() == ([0, 0, 8] if side == "left" else [8, 0, 0])
    back = unpad(batch)
    assert [row.input_ids for row in back] == [[5, 6, 7], [8]]
    assert [row.extra["token_type_ids"] for row in back] == [[0, 0, 1], [1]]


def test_keys_from_env_and_file_are_kept_as_digests(tmp_path, monkeypatch):
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# team keys\nfile-key\n\n")
    monkeypatch.setenv("TEST_KEYS", "env-one, env-two")
    digests = load_key_digests("TEST_KEYS", key_file)
    assert digests == {digest("file-key"), digest("env-one"), digest("env-two")}
    assert "file-key" not in repr(digests)
    assert is_authorized("Bearer env-two", digests)
    assert is_authorized("bearer file-key", digests)
    assert not is_authorized("Bearer wrong", digests)
    assert not is_authorized("Basic file-key", digests)
    assert not is_authorized(None, digests)
    assert is_authorized(None, frozenset())  # no keys configured: open
    assert bearer_token("Bearer  ") is None
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_key_digests(None, tmp_path / "missing.txt")


def test_base64_encoding_is_little_endian_float32():
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    decoded = np.frombuffer(base64.b64decode(encode_embedding(vector, "base64")), dtype="<f4")
    assert decoded.tolist() == [0.5, -1.25, 3.0]
    assert encode_embedding(vector, "float") == [0.5, -1.25, 3.0]


def test_truncate_rows_matches_the_torch_matryoshka_truncation():
    from embedforge.models.embedder import truncate_embeddings

    matrix = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    expected = truncate_embeddings(torch.from_numpy(matrix), 32).numpy()
    np.testing.assert_allclose(truncate_rows(matrix, 32), expected, atol=1e-6)
    assert truncate_rows(matrix, None) is matrix


def test_ranked_results_sort_by_score_keep_ties_in_order_and_cut_top_n():
    results = ranked_results(np.array([0.2, 0.9, 0.2, 0.5]), ["a", "b", "c", "d"], top_n=3, return_documents=True)
    assert [(r.index, r.document.text) for r in results] == [(1, "b"), (3, "d"), (0, "a")]
    assert ranked_results(np.array([0.1]), ["a"], None, False)[0].document is None


def test_settings_reject_unknown_keys_and_bad_budgets():
    with pytest.raises(ConfigError, match="embeder"):
        parse_config({"embedder": "x", "embeder": "y"}, ServeSettings)
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        parse_config({"embedder": "x", "embedder_batching": {"max_batch_size": 64, "max_batch_tokens": 32}}, ServeSettings)
    assert model_name("/models/my-embedder/", None) == "my-embedder"
    assert model_name("/models/x", "public") == "public"


def run_batcher(process, max_rows: int, submissions: list[tuple[object, int]], busy=None, gate=None):
    """Submit the first payload; once the model thread is ``busy`` with it, submit the rest, then open ``gate``."""
    import asyncio

    async def scenario():
        batcher = ContinuousBatcher(process, max_rows)
        tasks = [asyncio.create_task(batcher.submit(*submissions[0]))]
        if busy is not None:
            await asyncio.to_thread(busy.wait, 5)
        tasks += [asyncio.create_task(batcher.submit(payload, rows)) for payload, rows in submissions[1:]]
        await asyncio.sleep(0.05)
        if gate is not None:
            gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(scenario())


def test_continuous_batcher_takes_everything_waiting_up_to_max_rows_with_no_timer():
    import threading

    busy, gate, takes = threading.Event(), threading.Event(), []

    def process(payloads):
        takes.append(list(payloads))
        busy.set()
        gate.wait(5)  # the first take holds the model thread while the others queue up
        return [payload.upper() for payload in payloads]

    results = run_batcher(process, max_rows=4, submissions=[("a", 1), ("b", 2), ("c", 1), ("d", 1), ("e", 3)], busy=busy, gate=gate)
    assert results == ["A", "B", "C", "D", "E"]
    # a alone (the model was idle); then b + c + d fill 4 rows; e (3 rows) would overflow and waits.
    assert takes == [["a"], ["b", "c", "d"], ["e"]]


def test_continuous_batcher_fails_only_the_requests_it_must_and_keeps_serving():
    class Mistake(ValueError):
        pass

    def process(payloads):
        if "crash" in payloads:
            raise RuntimeError("model failed")
        return [Mistake(payload) if payload == "bad" else payload for payload in payloads]

    results = run_batcher(process, max_rows=1, submissions=[("ok", 1), ("bad", 1), ("crash", 1), ("after", 1)])
    assert results[0] == "ok" and isinstance(results[1], Mistake) and isinstance(results[2], RuntimeError) and results[3] == "after"



def test_served_names_are_meaningful_by_default(tmp_path, minilm_dir):
    assert served_names("all-MiniLM-L6-v2", minilm_dir) == ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
    assert served_names("sentence-transformers/all-MiniLM-L6-v2", minilm_dir)[0] == "sentence-transformers/all-MiniLM-L6-v2"
    assert served_names(str(minilm_dir), minilm_dir) == ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
    merged = tmp_path / "quickstart" / "merge-0123456789" / "model"
    merged.mkdir(parents=True)
    assert served_names(str(merged), merged) == ["quickstart/merge", "model"]
    plain = tmp_path / "my-embedder"
    assert served_names(f"{plain}/", plain) == ["my-embedder"]
    assert served_names(str(merged), merged, "public") == ["public"]
    assert served_names("tiny-qwen3-embedder", tmp_path / "cache" / "tiny-qwen3-embedder") == ["tiny-qwen3-embedder"]


def test_a_serve_config_with_a_reranker_needs_the_reranker_application(tiny_embedder_dir, tiny_reranker_dir):
    from embedforge.commands.serve import config_problems

    args = {"embedder": str(tiny_embedder_dir), "reranker": str(tiny_reranker_dir)}
    embedder_app = {"name": "embedforge", "route_prefix": "/", "import_path": "embedforge.serving.app:build_app", "args": args}
    reranker_app = {"name": "embedforge-reranker", "route_prefix": "/v1/rerank", "import_path": "embedforge.serving.app:build_reranker_app", "args": args}
    assert config_problems({"applications": [embedder_app, reranker_app]}) == []
    (problem,) = config_problems({"applications": [embedder_app]})
    assert problem.startswith("applications: args.reranker is set, but no application named 'embedforge-reranker'")
    assert config_problems({"applications": [embedder_app, {**reranker_app, "route_prefix": "/rerank"}]}) == [problem]
    assert config_problems({"applications": [{**embedder_app, "args": {"embedder": str(tiny_embedder_dir)}}]}) == []
