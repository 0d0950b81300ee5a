"""The reranker's prior: BM25, the embedder's scaled cosine, and a cross-encoder that starts as the prior.

A cross-encoder with a prior has the logit ``prior + f``, with f's head starting at zero:
untrained it ranks exactly as the prior does, training moves f only, and the exported
folder carries the prior to every scorer (``load_reranker``, evaluation, serving).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embedforge.models.lexical import LexicalScorer, terms
from embedforge.models.prior import FirstStagePrior
from embedforge.models.reranker import CrossEncoderReranker, load_reranker
from embedforge.training.batches import TokenizePairGroups
from embedforge.training.config import parse_stage_config

ROWS = [
    {"query": "what eats bamboo?", "positive": "Giant pandas eat bamboo almost exclusively.", "negatives": ["The stock market closed higher.", "Glaciers carve valleys."], "instruction": None},
    {"query": "how do vaccines work?", "positive": "Vaccines train the immune system to recognise a pathogen.", "negatives": ["Violins have four strings.", "Pandas eat bamboo shoots."], "instruction": None},
]
COLUMNS = ("query", "positive", "negatives", "instruction")


def test_bm25_matches_the_formula_on_a_small_collection():
    documents = ["the cat sat", "the dog sat on the mat", "a bird"]
    scorer = LexicalScorer.fit(documents + ["the cat sat"])  # a repeated text counts once
    n, average = 3, (3 + 6 + 2) / 3
    assert scorer.average_length == pytest.approx(average)

    def expected(query: str, text: str) -> float:
        words, total = terms(text), 0.0
        for term in set(terms(query)):
            containing = sum(term in terms(d) for d in documents)
            f = words.count(term)
            if containing and f:
                idf = math.log(1 + (n - containing + 0.5) / (containing + 0.5))
                total += idf * f * 1.9 / (f + 0.9 * (1 - 0.4 + 0.4 * len(words) / average))
        return total

    query = "The cat on a MAT, unseen-word"
    np.testing.assert_allclose(scorer.score(query, documents), [expected(query, d) for d in documents], rtol=1e-6)
    assert scorer.score("zebra", documents).tolist() == [0.0, 0.0, 0.0]
    assert scorer.score(query, documents)[1] > scorer.score(query, documents)[0] > 0  # "mat" is rarer than "the"


def test_bm25_saves_and_loads(tmp_path):
    scorer = LexicalScorer.fit(["alpha beta", "beta gamma"])
    assert LexicalScorer.load(scorer.save(tmp_path / "bm25.json")) == scorer
    with pytest.raises(ValueError, match="at least one document"):
        LexicalScorer.fit([])


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory, minilm_dir):
    documents = [text for row in ROWS for text in (row["positive"], *row["negatives"])]
    return FirstStagePrior.build(minilm_dir, documents, embedder_weight=20.0, lexical_weight=0.5).save(tmp_path_factory.mktemp("prior"))


def test_prior_is_scaled_cosine_plus_scaled_bm25(prior_dir):
    prior = FirstStagePrior.load(prior_dir, device="cpu")
    query, documents = ROWS[0]["query"], [ROWS[0]["positive"], *ROWS[0]["negatives"]]
    q = prior.embedder.encode([query], query=True)[0]
    d = prior.embedder.encode(documents)
    expected = 20.0 * d @ q + 0.5 * prior.lexical.score(query, documents)
    np.testing.assert_allclose(prior.scores(query, documents), expected, rtol=1e-5, atol=1e-5)
    assert prior.lexical.score(query, documents)[0] > 0 and prior.scores(query, documents).argmax() == 0


def prior_config(minilm_dir, **model):
    return parse_stage_config(
        {
            "stage": 2,
            "model": {"kind": "reranker", "base": str(minilm_dir), "max_length": 64, **model},
            "data": {"datasets": [{"name": "a", "path": "x.jsonl"}], "num_negatives": 2},
            "loss": {"reranker_loss": "listwise"},
            "optim": {"steps": 10},
            "run": {"name": "r"},
        }
    )


def test_a_reranker_with_a_prior_starts_as_the_prior_and_exports_it(minilm_dir, prior_dir, tmp_path):
    from embedforge.losses import ListwiseLoss
    from embedforge.training.modules import build_trainable, export_model
    from embedforge.training.steps import build_loss, reranker_loss

    torch.manual_seed(0)
    config = prior_config(minilm_dir, prior={"embedder": str(minilm_dir), "lexical_weight": 0.5})
    module = build_trainable(config, minilm_dir)
    columns = TokenizePairGroups(str(minilm_dir), max_length=64, prior_dir=str(prior_dir))({key: [r[key] for r in ROWS] for key in COLUMNS})
    prior = FirstStagePrior.load(prior_dir, device="cpu")
    expected = np.stack(prior.group_scores([r["query"] for r in ROWS], [[r["positive"], *r["negatives"]] for r in ROWS]))
    np.testing.assert_allclose(columns["prior"], expected, rtol=1e-5, atol=1e-5)

    batch = {key: torch.as_tensor(value) for key, value in columns.items()}
    loss_fn = build_loss(config)
    loss = reranker_loss(module, loss_fn, batch)
    torch.testing.assert_close(loss, ListwiseLoss(1.0)(torch.as_tensor(expected)), rtol=1e-5, atol=1e-5)  # a zero head adds nothing
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    loss.backward()
    optimizer.step()
    assert module.model.classifier.weight.abs().sum() > 0  # the correction learns

    folder = export_model(config, minilm_dir, module.state_dict(), tmp_path / "exported", prior_dir=prior_dir)
    reranker = load_reranker(folder, device="cpu")
    assert isinstance(reranker, CrossEncoderReranker) and reranker.prior is not None
    query, documents = ROWS[1]["query"], [ROWS[1]["positive"], *ROWS[1]["negatives"]]
    with torch.no_grad():
        own = reranker(**reranker.build_inputs(query, documents)).numpy()
    logits = reranker.score(query, documents, logits=True)
    np.testing.assert_allclose(logits, own + prior.scores(query, documents), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(reranker.score(query, documents), 1 / (1 + np.exp(-logits)), rtol=1e-5)

    from embedforge.training.driver import build_datasets
    from embedforge.training.pairs import write_pair_rows

    rows = write_pair_rows(ROWS, tmp_path / "rows.jsonl")
    go_on = parse_stage_config({**prior_config(folder).model_dump(mode="json"), "data": {"datasets": [{"name": "a", "path": str(rows)}], "num_negatives": 2}})
    with pytest.raises(ValueError, match="was trained with a prior"):  # its correction would train without the prior it is saved with
        build_datasets(go_on, folder, tmp_path / "run")


def test_prior_is_for_rerankers_only(minilm_dir):
    from embedforge.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="model.prior applies to rerankers only"):
        parse_stage_config(
            {
                "stage": 2,
                "model": {"kind": "embedder", "base": str(minilm_dir), "prior": {"embedder": str(minilm_dir)}},
                "data": {"datasets": [{"name": "a", "path": "x.jsonl"}]},
                "optim": {"steps": 10},
                "run": {"name": "r"},
            }
        )
