"""A cross-encoder with a prior, served: ``/v1/rerank`` adds the prior exactly as ``embedforge score`` does."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from embedforge.cli import main as cli_main
from test_serving_api import free_port

pytestmark = pytest.mark.slow

QUERY = "what causes tides"
DOCUMENTS = ["The moon's gravity causes the tides.", "Bananas are yellow.", "tides " * 200, "Tides, tides and the moon."]


@pytest.fixture(scope="module")
def prior_reranker_dir(tmp_path_factory, minilm_dir):
    """A 2-layer BERT cross-encoder with a prior (MiniLM's cosine and BM25), its head moved off zero."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from embedforge.models.prior import FirstStagePrior
    from embedforge.training.config import parse_stage_config
    from embedforge.training.modules import build_trainable, export_model

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("tiny-encoder")
    BertModel(BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)).save_pretrained(base)
    BertTokenizerFast.from_pretrained(minilm_dir).save_pretrained(base)
    prior = {"embedder": str(minilm_dir), "lexical_weight": 0.3}
    config = parse_stage_config(
        {
            "stage": 2,
            "model": {"kind": "reranker", "base": str(base), "max_length": 64, "prior": prior},
            "data": {"datasets": [{"name": "a", "path": "x.jsonl"}], "num_negatives": 1},
            "loss": {"reranker_loss": "listwise"},
            "optim": {"steps": 1},
            "run": {"name": "r"},
        }
    )
    module = build_trainable(config, base)
    with torch.no_grad():
        module.model.classifier.weight.normal_()
    prior_dir = FirstStagePrior.build(minilm_dir, DOCUMENTS, embedder_weight=20.0, lexical_weight=0.3).save(tmp_path_factory.mktemp("prior"))
    return export_model(config, base, module.state_dict(), tmp_path_factory.mktemp("reranker") / "model", prior_dir=prior_dir)


@pytest.fixture(scope="module")
def server(local_ray, tiny_embedder_dir, prior_reranker_dir):
    from embedforge.serving.app import start_local, stop_local

    url = start_local({"embedder": str(tiny_embedder_dir), "reranker": str(prior_reranker_dir), "reranker_name": "prior-reranker"}, port=free_port())
    yield url
    stop_local()


def test_served_scores_include_the_prior(server, prior_reranker_dir, tmp_path):
    from embedforge.models.reranker import load_reranker

    (tmp_path / "docs.txt").write_text("\n".join(DOCUMENTS) + "\n")
    assert cli_main(["score", "--model", str(prior_reranker_dir), "--query", QUERY, "--input", str(tmp_path / "docs.txt"), "--output", str(tmp_path / "s.json")]) == 0
    expected = json.loads((tmp_path / "s.json").read_text())
    without_prior = load_reranker(prior_reranker_dir, device="cpu")
    without_prior.prior = None
    assert max(abs(a - b) for a, b in zip(expected, without_prior.score(QUERY, DOCUMENTS))) > 1e-3  # the prior matters here

    response = httpx.post(f"{server}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, timeout=60)
    assert response.status_code == 200, response.text
    for result in response.json()["results"]:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-6)


def test_concurrent_requests_of_different_sizes_each_get_their_own_prior(server, prior_reranker_dir):
    """The replica batches requests and computes all their priors together; each must get its own."""
    from concurrent.futures import ThreadPoolExecutor

    from embedforge.models.reranker import load_reranker

    reranker = load_reranker(prior_reranker_dir, device="cpu")
    requests = [(QUERY, DOCUMENTS), ("yellow fruit", DOCUMENTS[:2]), ("moon", DOCUMENTS[1:])] * 3

    def rerank(request):
        query, documents = request
        return httpx.post(f"{server}/v1/rerank", json={"query": query, "documents": documents}, timeout=60)

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(rerank, requests))
    for (query, documents), response in zip(requests, responses):
        assert response.status_code == 200, response.text
        expected = reranker.score(query, documents)
        for result in response.json()["results"]:
            assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-6)
