import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from embedforge.models.reranker import CrossEncoderReranker, RerankerSettings, YesNoReranker, load_reranker
from embedforge.prompts import RERANK_PREFIX, RERANK_SUFFIX, rerank_body

QUERY = "what do tides depend on"
DOCUMENTS = ["The moon's gravity pulls the oceans.", "Bananas are yellow.", "tide " * 400]


@pytest.fixture(scope="module")
def judge(tiny_reranker_dir):
    reranker = load_reranker(tiny_reranker_dir, device="cpu")
    assert isinstance(reranker, YesNoReranker)
    return reranker


def test_prompt_is_the_exact_qwen3_template(judge):
    inputs = judge.build_inputs(QUERY, DOCUMENTS[:1], instruction="Judge it")
    text = judge.tokenizer.decode(inputs["input_ids"][0][inputs["attention_mask"][0].bool()])
    assert text == RERANK_PREFIX + rerank_body(QUERY, DOCUMENTS[0], "Judge it") + RERANK_SUFFIX
    assert "<Instruct>: Judge it\n<Query>: what do tides depend on\n<Document>: The moon" in text


def test_only_the_document_is_truncated(judge):
    inputs = judge.build_inputs(QUERY, DOCUMENTS, instruction="Judge it")
    assert inputs["input_ids"].shape[1] == judge.settings.max_length
    long_text = judge.tokenizer.decode(inputs["input_ids"][2])
    assert long_text.startswith(RERANK_PREFIX) and long_text.endswith(RERANK_SUFFIX)
    assert f"<Query>: {QUERY}\n<Document>: tide tide" in long_text
    assert inputs["attention_mask"][0, 0].item() == 0, "shorter rows are left padded"


def test_score_is_sigmoid_of_yes_minus_no_at_the_last_position(judge):
    inputs = judge.build_inputs(QUERY, DOCUMENTS)
    with torch.no_grad():
        logits = judge.model(**inputs).logits[:, -1, :]
    expected = torch.sigmoid(logits[:, judge.yes_id] - logits[:, judge.no_id]).numpy()
    expected_softmax = torch.softmax(logits[:, [judge.yes_id, judge.no_id]], dim=-1)[:, 0].numpy()
    scores = judge.score(QUERY, DOCUMENTS, batch_size=2)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    np.testing.assert_allclose(scores, expected_softmax, atol=1e-6)
    assert judge.tokenizer.decode([judge.yes_id]) == "yes" and judge.tokenizer.decode([judge.no_id]) == "no"


def test_folded_sequence_classifier_scores_equal_the_judge(judge, tmp_path):
    folder = judge.export_sequence_classifier(tmp_path / "classifier")
    classifier = load_reranker(folder, device="cpu")
    assert isinstance(classifier, CrossEncoderReranker) and classifier.settings.prompt_format == "qwen3"
    np.testing.assert_allclose(classifier.score(QUERY, DOCUMENTS), judge.score(QUERY, DOCUMENTS), atol=1e-5)


def test_encoder_cross_encoder_scores_text_pairs(tmp_path, minilm_dir):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    BertTokenizerFast.from_pretrained(minilm_dir).save_pretrained(tmp_path)
    reranker = load_reranker(tmp_path, device="cpu")
    assert isinstance(reranker, CrossEncoderReranker) and reranker.settings.prompt_format == "pair"
    scores = reranker.score(QUERY, DOCUMENTS)
    pair = reranker.tokenizer(QUERY, DOCUMENTS[0], return_tensors="pt")
    with torch.no_grad():
        expected = torch.sigmoid(reranker.model(**pair).logits[0, 0]).item()
    assert scores.shape == (3,) and abs(scores[0] - expected) < 1e-5


def test_prompt_without_room_for_documents_is_an_error(judge):
    short = YesNoReranker(judge.model, judge.tokenizer, RerankerSettings(max_length=64))
    with pytest.raises(ValueError, match="no room for documents"):
        short.build_inputs("long query " * 50, ["doc"])
