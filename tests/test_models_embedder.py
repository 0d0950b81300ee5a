import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedforge.models.embedder import Embedder, check_dimensions, truncate_embeddings
from embedforge.models.pooling import cls_pool, last_token_pool, mean_pool
from embedforge.models.qwen3 import build_embedder
from embedforge.prompts import format_query

TEXTS = ["What causes tides?", "The moon's gravity pulls the oceans.", "x", "A much longer sentence " * 5]
END_OF_TEXT_ID = 151643


@pytest.fixture(scope="module")
def tiny(tiny_embedder_dir):
    return Embedder.load(tiny_embedder_dir, device="cpu")


def test_pooling_is_independent_of_padding_side():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4)
    lengths = [3, 2]
    right = torch.tensor([[1, 1, 1], [1, 1, 0]])
    left = torch.tensor([[1, 1, 1], [0, 1, 1]])
    left_hidden = hidden.clone()
    left_hidden[1, 1:] = hidden[1, :2]
    assert torch.equal(last_token_pool(hidden, right), last_token_pool(left_hidden, left))
    assert torch.equal(last_token_pool(hidden, right)[1], hidden[1, lengths[1] - 1])
    assert torch.allclose(mean_pool(hidden, right), mean_pool(left_hidden, left))
    assert torch.equal(cls_pool(hidden, right), cls_pool(left_hidden, left))
    assert torch.allclose(mean_pool(hidden, right)[1], hidden[1, :2].mean(0))


def test_tokenizer_appends_end_token_and_keeps_it_when_truncating(tiny):
    batch = tiny.tokenizer(["short", "word " * 500], padding=True, truncation=True, max_length=16, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 16
    assert batch["input_ids"][:, -1].tolist() == [END_OF_TEXT_ID, END_OF_TEXT_ID]
    assert batch["attention_mask"][0, 0].item() == 0, "left padding"


def test_embeddings_are_normalised_and_in_input_order(tiny):
    together = tiny.encode(TEXTS, batch_size=2)
    one_by_one = np.stack([tiny.encode([text])[0] for text in TEXTS])
    assert together.dtype == np.float32 and together.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_query_template_applies_instruction(tiny):
    query = tiny.encode(["tides"], query=True, instruction="Find passages")
    manual = tiny.encode([format_query("tides", "Find passages")])
    assert format_query("tides", "Find passages") == "Instruct: Find passages\nQuery:tides"
    np.testing.assert_allclose(query, manual, atol=1e-6)
    assert not np.allclose(query, tiny.encode(["tides"]), atol=1e-3)


def test_bidirectional_attention_sees_later_tokens_and_causal_does_not():
    embedder = build_embedder("tiny")
    ids = embedder.tokenize(["a b c d"])
    changed = ids["input_ids"].clone()
    changed[0, 2] = 100

    def first_token_state(input_ids):
        return embedder.backbone(input_ids=input_ids, attention_mask=ids["attention_mask"]).last_hidden_state[0, 0]

    assert not torch.allclose(first_token_state(ids["input_ids"]), first_token_state(changed))
    embedder.backbone.config.is_causal = True
    assert torch.allclose(first_token_state(ids["input_ids"]), first_token_state(changed))


def test_matryoshka_truncates_then_renormalises(tiny):
    full = tiny.encode(TEXTS)
    small = tiny.encode(TEXTS, dimensions=32)
    expected = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(small, expected, atol=1e-5)
    assert torch.equal(truncate_embeddings(torch.ones(2, 8), None), torch.ones(2, 8))
    with pytest.raises(ValueError, match="between 32 and 64"):
        check_dimensions(16, 64)
    with pytest.raises(ValueError):
        tiny.encode(TEXTS, dimensions=65)


def test_save_load_roundtrip_keeps_vectors(tiny, tmp_path):
    reloaded = Embedder.load(tiny.save(tmp_path / "copy"), device="cpu")
    assert reloaded.settings == tiny.settings
    np.testing.assert_allclose(reloaded.encode(TEXTS, query=True), tiny.encode(TEXTS, query=True), atol=1e-6)


@pytest.mark.parametrize("model", ["tiny_qwen3", "minilm"])
def test_sentence_transformers_loads_the_same_model(model, tiny_embedder_dir, minilm_dir):
    folder = tiny_embedder_dir if model == "tiny_qwen3" else minilm_dir
    ours = Embedder.load(folder, device="cpu")
    theirs = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(theirs.encode(TEXTS), ours.encode(TEXTS), atol=1e-5)
    if ours.settings.default_instruction is not None:
        np.testing.assert_allclose(theirs.encode(TEXTS, prompt_name="query"), ours.encode(TEXTS, query=True), atol=1e-5)


def test_minilm_settings_come_from_its_sentence_transformers_files(minilm_dir):
    settings = Embedder.load(minilm_dir, device="cpu").settings
    assert (settings.pooling, settings.normalize, settings.max_length, settings.default_instruction) == ("mean", True, 256, None)


def test_plain_hugging_face_qwen3_folder_loads_causal_last_token(tmp_path):
    embedder = build_embedder("tiny")
    embedder.backbone.config.is_causal = None
    del embedder.backbone.config.is_causal
    embedder.backbone.save_pretrained(tmp_path)
    embedder.tokenizer.save_pretrained(tmp_path)
    loaded = Embedder.load(tmp_path, device="cpu")
    assert (loaded.settings.pooling, loaded.settings.attention) == ("last_token", "causal")
    assert loaded.backbone.config.is_causal is True
    assert Embedder.load(tmp_path, device="cpu", attention="bidirectional").backbone.config.is_causal is False


def test_loading_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Embedder.load(tmp_path)
