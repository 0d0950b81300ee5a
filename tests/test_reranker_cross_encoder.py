"""Reranker inputs and the cross-encoder training path, without Ray (the Ray run is in test_training_ray).

The judge prompt's ids must equal the released Qwen3-Reranker string tokenised whole; a
cross-encoder trained from the packaged all-MiniLM-L6-v2 must train in the same step as the
judge, and its export must score alike in embedforge and sentence-transformers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforge.models.reranker import CrossEncoderReranker, build_judge_inputs, load_reranker
from embedforge.prompts import RERANK_PREFIX, RERANK_SUFFIX, rerank_body
from embedforge.training.batches import TokenizeJudgeGroups, TokenizePairGroups, tokenize_pair_groups
from embedforge.training.config import parse_stage_config

QUERY = "what moves the tides?"
INSTRUCTION = "Judge it"
DOCUMENTS = [
    "The moon's gravity pulls the oceans.",
    " leading space, then words",
    "  two leading spaces",
    ",comma first; (brackets) and 'quotes'!",
    "Ünïcode naïve café: 日本語の文書 and émojis 🌊",
    "2020 was a year of high tides",
    "\nnewline first",
    "",
    " ",
]
ROWS = [
    {"query": "what eats bamboo?", "positive": "Giant pandas eat bamboo almost exclusively.", "negatives": ["The stock market closed higher.", "Glaciers carve valleys.", "Compilers translate code."], "instruction": None},
    {"query": "how do vaccines work?", "positive": "Vaccines train the immune system to recognise a pathogen.", "negatives": ["Violins have four strings.", "Deserts get little rain.", "Bridges span rivers."], "instruction": None},
    {"query": "why is the sky blue?", "positive": "Rayleigh scattering of sunlight makes the sky look blue.", "negatives": ["Coffee contains caffeine.", "Tigers are striped cats.", "Harbors shelter ships."], "instruction": None},
    {"query": "what powers a laser?", "positive": "A laser is pumped by light or current to make stimulated emission.", "negatives": ["Volcanoes erupt magma.", "Apples grow on trees.", "Rivers flow to the sea."], "instruction": "ignored by pair cross-encoders"},
]
COLUMNS = ("query", "positive", "negatives", "instruction")


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    from embedforge.paths import qwen3_tokenizer_dir
    from embedforge.tokenization import load_tokenizer

    return load_tokenizer(qwen3_tokenizer_dir())


def whole_prompt_ids(tokenizer, query: str, document: str, instruction: str = INSTRUCTION) -> list[int]:
    return tokenizer(RERANK_PREFIX + rerank_body(query, document, instruction) + RERANK_SUFFIX, add_special_tokens=False)["input_ids"]


def real_ids(encoded: dict, row: int) -> list[int]:
    return encoded["input_ids"][row][encoded["attention_mask"][row].bool()].tolist()


def test_judge_ids_equal_the_whole_prompt_tokenised_as_one_string(qwen3_tokenizer):
    encoded = build_judge_inputs(qwen3_tokenizer, QUERY, DOCUMENTS, INSTRUCTION, max_length=512)
    for row, document in enumerate(DOCUMENTS):
        assert real_ids(encoded, row) == whole_prompt_ids(qwen3_tokenizer, QUERY, document), repr(document)
    # The case that tokenising the parts apart got wrong: the first word keeps its space.
    first_word = qwen3_tokenizer.convert_ids_to_tokens(real_ids(encoded, 0))
    assert "ĠThe" in first_word


def test_long_documents_are_cut_to_max_length_keeping_prefix_query_and_suffix(qwen3_tokenizer):
    long_documents = ["tide " * 400, "Ünïcode café " * 300, "The moon " + "x" * 5000]
    suffix = qwen3_tokenizer(RERANK_SUFFIX, add_special_tokens=False)["input_ids"]
    for max_length in (100, 257):
        encoded = build_judge_inputs(qwen3_tokenizer, QUERY, long_documents, INSTRUCTION, max_length=max_length)
        assert encoded["input_ids"].shape == (3, max_length) and bool(encoded["attention_mask"].all())
        for row, document in enumerate(long_documents):
            whole = whole_prompt_ids(qwen3_tokenizer, QUERY, document)
            ids = encoded["input_ids"][row].tolist()
            assert ids == whole[: max_length - len(suffix)] + suffix
            text = qwen3_tokenizer.decode(ids)
            assert text.startswith(RERANK_PREFIX + rerank_body(QUERY, "", INSTRUCTION)) and text.endswith(RERANK_SUFFIX)


def test_training_judge_groups_are_the_whole_prompt_ids(tiny_reranker_dir, qwen3_tokenizer):
    rows = [{"query": QUERY, "positive": DOCUMENTS[0], "negatives": [DOCUMENTS[1], DOCUMENTS[4]], "instruction": INSTRUCTION}]
    out = TokenizeJudgeGroups(str(tiny_reranker_dir), max_length=160)({key: [r[key] for r in rows] for key in COLUMNS})
    assert out["input_ids"].shape == (1, 3, 160)
    for column, document in enumerate([DOCUMENTS[0], DOCUMENTS[1], DOCUMENTS[4]]):
        mask = out["attention_mask"][0, column].astype(bool)
        assert out["input_ids"][0, column][mask].tolist() == whole_prompt_ids(qwen3_tokenizer, QUERY, document)


def test_pair_groups_match_the_cross_encoder_inputs(minilm_dir):
    out = TokenizePairGroups(str(minilm_dir), max_length=48)({key: [r[key] for r in ROWS] for key in COLUMNS})
    assert sorted(out) == ["attention_mask", "input_ids", "token_type_ids"]
    assert all(value.shape == (4, 4, 48) and value.dtype == np.int64 for value in out.values())
    reranker = load_reranker(minilm_dir, device="cpu", new_head=True)
    assert isinstance(reranker, CrossEncoderReranker)
    assert (reranker.settings.head, reranker.settings.prompt_format) == ("classifier", "pair")
    row = ROWS[1]
    expected = reranker.build_inputs(row["query"], [row["positive"], *row["negatives"]], instruction="unused")
    for column in range(4):
        width = int(expected["attention_mask"][column].sum())
        for name in ("input_ids", "token_type_ids"):
            assert out[name][1, column, :width].tolist() == expected[name][column, :width].tolist()
        assert out["attention_mask"][1, column, width:].sum() == 0  # right padded
    # Only the document is cut: the query and both separators survive.
    long = tokenize_pair_groups(reranker.tokenizer, ["short query"], ["word " * 200], [["other " * 200]], max_length=32)
    text = reranker.tokenizer.decode(long["input_ids"][0, 0])
    assert long["attention_mask"].sum() == 64 and text.startswith("[CLS] short query [SEP] word word") and text.endswith("[SEP]")


def test_a_bare_encoder_is_no_reranker_until_trained(minilm_dir):
    with pytest.raises(ValueError, match="bare bert encoder without a relevance head"):
        load_reranker(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory, minilm_dir):
    """A bare 2-layer BERT encoder (as all-MiniLM-L6-v2 is saved) with MiniLM's tokenizer: a fast training base."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    config = BertConfig(
        vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def cross_encoder_config(minilm_dir, loss: str, **optim):
    return parse_stage_config(
        {
            "stage": 2,
            "model": {"kind": "reranker", "base": str(minilm_dir), "max_length": 64},
            "data": {"datasets": [{"name": "a", "path": "x.jsonl"}], "num_negatives": 3},
            "loss": {"reranker_loss": loss},
            "optim": {"steps": 10, **optim},
            "run": {"name": "r"},
        }
    )


@pytest.mark.parametrize("loss", ["listwise", "pointwise"])
def test_cross_encoder_step_overfits_four_groups(tiny_encoder_dir, loss):
    """A bare encoder base trains in the judge's step; MiniLM itself is the Ray test's base (slower here)."""
    from embedforge.losses import ListwiseLoss, PointwiseLogitLoss
    from embedforge.training.modules import build_trainable
    from embedforge.training.steps import build_loss, reranker_loss

    torch.manual_seed(0)
    config = cross_encoder_config(tiny_encoder_dir, loss)
    module = build_trainable(config, tiny_encoder_dir)
    assert isinstance(module, CrossEncoderReranker) and module.settings.max_length == 64
    loss_fn = build_loss(config)
    assert isinstance(loss_fn, ListwiseLoss if loss == "listwise" else PointwiseLogitLoss)
    columns = TokenizePairGroups(str(tiny_encoder_dir), max_length=64)({key: [r[key] for r in ROWS] for key in COLUMNS})
    batch = {key: torch.as_tensor(value) for key, value in columns.items()}
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):  # pointwise sits at the all-negative prior for ~12 steps before it separates
        value = reranker_loss(module, loss_fn, batch)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_export_scores_equal_sentence_transformers_cross_encoder(minilm_dir, tmp_path):
    from sentence_transformers import CrossEncoder

    from embedforge.training.modules import build_trainable, export_model

    torch.manual_seed(0)
    config = cross_encoder_config(minilm_dir, "listwise")
    module = build_trainable(config, minilm_dir)
    with torch.no_grad():
        module.model.classifier.weight.mul_(20)  # a head far from its init, so a wrong one would show
    folder = export_model(config, minilm_dir, module.state_dict(), tmp_path / "exported")
    ours = load_reranker(folder, device="cpu")
    assert isinstance(ours, CrossEncoderReranker) and ours.settings.max_length == 64
    documents = [ROWS[0]["positive"], *ROWS[0]["negatives"], "bamboo " * 300]  # the last is cut at 64 tokens
    scores = ours.score(ROWS[0]["query"], documents)
    theirs = CrossEncoder(str(folder), device="cpu").predict([(ROWS[0]["query"], document) for document in documents])
    np.testing.assert_allclose(scores, theirs, atol=1e-5)
    assert np.ptp(scores) > 0.05 and all(0 < s < 1 for s in scores)  # sigmoid of distinct logits
    with torch.no_grad():
        logits = module.eval()(**ours.build_inputs(ROWS[0]["query"], documents))
    np.testing.assert_allclose(scores, torch.sigmoid(logits).numpy(), atol=1e-5)  # the trained module, exported as is


def test_lora_cross_encoder_trains_its_new_head_and_exports_merged(tiny_encoder_dir, tmp_path):
    from embedforge.training.modules import build_trainable, export_model

    raw = cross_encoder_config(tiny_encoder_dir, "listwise").model_dump(mode="json")
    config = parse_stage_config({**raw, "strategy": {"lora": {"target_modules": ["query", "value"]}}})
    module = build_trainable(config, tiny_encoder_dir)
    trained = {name for name, p in module.named_parameters() if p.requires_grad and "lora_" not in name}
    assert any("classifier" in name for name in trained) and any("pooler" in name for name in trained)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05)
    exported = load_reranker(export_model(config, tiny_encoder_dir, module.state_dict(), tmp_path / "lora"), device="cpu")
    inputs = exported.build_inputs(ROWS[0]["query"], ROWS[0]["negatives"])
    with torch.no_grad():
        torch.testing.assert_close(exported(**inputs), module.eval()(**inputs), atol=1e-5, rtol=0)
