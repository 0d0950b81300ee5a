"""Slerp, state-dict merging and checkpoint-folder merging."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from embedforge.merge import (
    lerp,
    load_checkpoint_weights,
    merge_checkpoints,
    merge_state_dicts,
    slerp,
    slerp_state_dicts,
)


def rand(*shape, seed=0, scale=1.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


def state_dict(seed: int) -> dict[str, torch.Tensor]:
    return {
        "layer.weight": rand(4, 6, seed=seed),
        "layer.bias": rand(6, seed=seed + 100, scale=0.1),
        "position_ids": torch.arange(8) + seed,
    }


# --- slerp -------------------------------------------------------------------------------


def test_slerp_endpoints_reproduce_inputs():
    a, b = rand(5, 7, seed=1), rand(5, 7, seed=2, scale=3.0)
    torch.testing.assert_close(slerp(a, b, 0.0), a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(slerp(a, b, 1.0), b, rtol=1e-6, atol=1e-6)


def test_slerp_matches_closed_form_on_the_plane():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    # Half way: 45 degrees, norm (2 + 4) / 2.
    torch.testing.assert_close(slerp(a, b, 0.5), 3.0 * torch.tensor([1.0, 1.0]) / math.sqrt(2))
    # A third of the way: 30 degrees, norm 2 + (4 - 2) / 3.
    expected = (2 + 2 / 3) * torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)])
    torch.testing.assert_close(slerp(a, b, 1 / 3), expected)


def test_slerp_keeps_the_norm_of_equal_norm_inputs():
    a = rand(16, 16, seed=3)
    b = rand(16, 16, seed=4)
    b = b * a.norm() / b.norm()
    for t in (0.25, 0.5, 0.9):
        merged = slerp(a, b, t)
        assert merged.norm().item() == pytest.approx(a.norm().item(), rel=1e-6)
    assert lerp(a, b, 0.5).norm() < 0.8 * a.norm()


def test_slerp_falls_back_to_lerp_when_nearly_parallel():
    a = rand(10, 10, seed=5)
    b = 1.5 * a + 1e-4 * rand(10, 10, seed=6)
    assert torch.equal(slerp(a, b, 0.3), lerp(a, b, 0.3))
    assert torch.equal(slerp(a, -a, 0.3), lerp(a, -a, 0.3))
    zero = torch.zeros(3)
    assert torch.equal(slerp(zero, torch.ones(3), 0.5), torch.full((3,), 0.5))


def test_slerp_takes_integer_tensors_from_the_nearer_side_and_keeps_dtype():
    a, b = torch.arange(5), torch.arange(5) * 10
    assert torch.equal(slerp(a, b, 0.3), a) and torch.equal(slerp(a, b, 0.5), b)
    fa, fb = rand(8, seed=7).bfloat16(), rand(8, seed=8).bfloat16()
    merged = slerp(fa, fb, 0.5)
    assert merged.dtype == torch.bfloat16
    torch.testing.assert_close(merged, slerp(fa.float(), fb.float(), 0.5).bfloat16())


def test_slerp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        slerp(torch.ones(3), torch.ones(4), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        slerp(torch.ones(3), torch.ones(3), 1.5)


# --- state dicts -------------------------------------------------------------------------


def test_linear_merge_is_the_weighted_average():
    sds = [state_dict(0), state_dict(1)]
    merged = merge_state_dicts(sds, weights=[1.0, 3.0], method="linear")
    for key in ("layer.weight", "layer.bias"):
        torch.testing.assert_close(merged[key], 0.25 * sds[0][key] + 0.75 * sds[1][key])
    assert torch.equal(merged["position_ids"], sds[1]["position_ids"])
    default = merge_state_dicts(sds, method="linear")
    mean = (sds[0]["layer.weight"] + sds[1]["layer.weight"]) / 2
    torch.testing.assert_close(default["layer.weight"], mean)


def test_two_way_slerp_merge_uses_t_from_the_weights():
    sds = [state_dict(0), state_dict(1)]
    merged = merge_state_dicts(sds, weights=[3.0, 1.0])
    expected = slerp_state_dicts(sds[0], sds[1], 0.25)
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key], rtol=0, atol=0)
    linear = 0.75 * sds[0]["layer.weight"] + 0.25 * sds[1]["layer.weight"]
    assert not torch.allclose(merged["layer.weight"], linear)
    assert torch.equal(merged["position_ids"], sds[0]["position_ids"])


def test_n_way_slerp_is_pairwise_with_cumulative_weights():
    sds = [state_dict(0), state_dict(1), state_dict(2)]
    merged = merge_state_dicts(sds, weights=[2.0, 1.0, 1.0])
    step = slerp_state_dicts(sds[0], sds[1], 1 / 3)
    expected = slerp_state_dicts(step, sds[2], 1 / 4)
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key])


def test_n_way_slerp_of_parallel_tensors_is_the_weighted_average():
    base = rand(6, 6, seed=9)
    sds = [{"w": base * scale} for scale in (1.0, 2.0, 5.0)]
    weights = [0.5, 0.3, 0.2]
    merged = merge_state_dicts(sds, weights=weights)
    linear = merge_state_dicts(sds, weights=weights, method="linear")
    torch.testing.assert_close(merged["w"], linear["w"])
    torch.testing.assert_close(merged["w"], base * (0.5 + 0.6 + 1.0))


@pytest.mark.parametrize("method", ["slerp", "linear"])
def test_zero_weights_drop_a_state_dict(method):
    sds = [state_dict(0), state_dict(1), state_dict(2)]
    merged = merge_state_dicts(sds, weights=[0.0, 1.0, 0.0], method=method)
    for key, value in sds[1].items():
        assert torch.equal(merged[key], value)
        assert merged[key] is not value


@pytest.mark.parametrize("weights", [[0.0, 0.0], [1.0, -1.0], [1.0], [1.0, math.nan]])
def test_bad_weights_raise(weights):
    with pytest.raises(ValueError, match="weights"):
        merge_state_dicts([state_dict(0), state_dict(1)], weights=weights)


def test_incompatible_state_dicts_raise_naming_the_key():
    a, b = state_dict(0), state_dict(1)
    del b["layer.bias"]
    with pytest.raises(ValueError, match="layer.bias"):
        merge_state_dicts([a, b])
    b = state_dict(1)
    b["extra.weight"] = torch.ones(2)
    with pytest.raises(ValueError, match="extra.weight"):
        merge_state_dicts([a, b], method="linear")
    b = state_dict(1)
    b["layer.weight"] = torch.ones(6, 4)
    with pytest.raises(ValueError, match="layer.weight"):
        slerp_state_dicts(a, b, 0.5)
    with pytest.raises(ValueError, match="method"):
        merge_state_dicts([a, state_dict(1)], method="ties")


# --- checkpoint folders ------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "merge", "me"]


def save_tiny_bert(folder: Path, seed: int, **save_kwargs) -> Path:
    """A 2-layer, 32-wide BERT with its tokenizer, as ``save_pretrained`` writes it."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(folder, **save_kwargs)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(vocab_file)).save_pretrained(folder)
    return folder


def test_merge_checkpoints_writes_a_loadable_hf_folder(tmp_path):
    from transformers import AutoModel

    a = save_tiny_bert(tmp_path / "a", seed=0)
    b = save_tiny_bert(tmp_path / "b", seed=1, max_shard_size="20KB")
    assert not (b / "model.safetensors").exists() and (b / "model.safetensors.index.json").exists()
    (a / "optimizer.pt").write_bytes(b"training state")
    (a / "trainer_state.json").write_text("{}")

    out = merge_checkpoints([a, b], tmp_path / "merged", weights=[0.7, 0.3])

    state_a, state_b = load_checkpoint_weights(a), load_checkpoint_weights(b)
    expected = merge_state_dicts([state_a, state_b], weights=[0.7, 0.3])
    written = load_file(out / "model.safetensors")
    assert written.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(written[key], value), key
    assert not torch.equal(written["encoder.layer.0.attention.self.query.weight"],
                           state_a["encoder.layer.0.attention.self.query.weight"])

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"} <= names
    assert not names & {"optimizer.pt", "trainer_state.json", "model.safetensors.index.json"}
    assert not any(name.startswith("model-") for name in names)

    model = AutoModel.from_pretrained(out)
    loaded = model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_merge_checkpoints_endpoint_weights_reproduce_the_first_checkpoint(tmp_path):
    a = save_tiny_bert(tmp_path / "a", seed=0)
    b = save_tiny_bert(tmp_path / "b", seed=1)
    out = merge_checkpoints([a, b], tmp_path / "merged", weights=[1.0, 0.0])
    original, written = load_file(a / "model.safetensors"), load_file(out / "model.safetensors")
    assert written.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(written[key], value), key


def test_merge_checkpoints_reads_pytorch_model_bin(tmp_path):
    a = save_tiny_bert(tmp_path / "a", seed=0)
    b = tmp_path / "b"
    b.mkdir()
    state_b = {k: v + 1.0 for k, v in load_file(a / "model.safetensors").items()}
    torch.save(state_b, b / "pytorch_model.bin")
    out = merge_checkpoints([a, b], tmp_path / "merged", method="linear")
    written = load_file(out / "model.safetensors")
    for key, value in load_file(a / "model.safetensors").items():
        torch.testing.assert_close(written[key], value + 0.5)


def test_merge_checkpoints_keeps_a_sentence_transformers_folder_loadable(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    folders = []
    for seed in (0, 1):
        hf = save_tiny_bert(tmp_path / f"hf{seed}", seed=seed)
        model = SentenceTransformer(modules=[Transformer(str(hf)), Pooling(32, "mean")])
        model.save(str(tmp_path / f"st{seed}"))
        folders.append(tmp_path / f"st{seed}")

    out = merge_checkpoints(folders, tmp_path / "merged")

    for name in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
        assert (out / name).read_text() == (folders[0] / name).read_text()
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"
    merged = SentenceTransformer(str(out), device="cpu")
    expected = merge_state_dicts([load_checkpoint_weights(f) for f in folders])
    weights = merged[0].auto_model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0)
    embedding = merged.encode(["hello world"], convert_to_tensor=True)
    assert embedding.shape == (1, 32) and torch.isfinite(embedding).all()


def test_merge_checkpoints_errors_name_the_folder(tmp_path):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    good = save_tiny_bert(tmp_path / "good", seed=0)
    with pytest.raises(FileNotFoundError, match="no_weights"):
        merge_checkpoints([good, empty], tmp_path / "merged")
    with pytest.raises(FileNotFoundError, match="missing"):
        merge_checkpoints([good, tmp_path / "missing"], tmp_path / "merged")
    with pytest.raises(FileExistsError):
        merge_checkpoints([good, good], good)


# --- the stage: MergeConfig, run_merge, embedforge merge --------------------------------


def test_merge_config_checks_weights_before_any_weights_load():
    from embedforge.config import ConfigError, parse_config
    from embedforge.merge import MergeConfig

    with pytest.raises(ConfigError, match="got 1 weights for 2 checkpoints"):
        parse_config({"checkpoints": ["a", "b"], "weights": [1.0], "output": "o"}, MergeConfig, "m.yaml")
    with pytest.raises(ConfigError, match="not all zero"):
        parse_config({"checkpoints": ["a", "b"], "weights": [0.0, 0.0], "output": "o"}, MergeConfig, "m.yaml")
    with pytest.raises(ConfigError, match="m.yaml: checkpoints: List should have at least 2 items"):
        parse_config({"checkpoints": ["a"], "output": "o"}, MergeConfig, "m.yaml")


def test_run_merge_writes_the_merge_and_refuses_its_own_inputs(tmp_path):
    from embedforge.merge import MergeConfig, run_merge

    a, b = save_tiny_bert(tmp_path / "a", seed=0), save_tiny_bert(tmp_path / "b", seed=1)
    output = run_merge(MergeConfig(checkpoints=[str(a), str(b)], weights=[3.0, 1.0], output=tmp_path / "merged"))
    expected = merge_state_dicts([load_checkpoint_weights(a), load_checkpoint_weights(b)], weights=[3.0, 1.0])
    written = load_file(output / "model.safetensors")
    for key, value in expected.items():
        torch.testing.assert_close(written[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="is one of the checkpoints"):
        run_merge(MergeConfig(checkpoints=[str(a), str(b)], output=a, overwrite=True))
    with pytest.raises(ValueError, match="checkpoints, output: required"):
        run_merge(MergeConfig())


def test_merge_command_runs_a_yaml_config_and_train_points_stage_3_there(tmp_path, tiny_embedder_dir, capsys):
    """``embedforge merge --config`` takes the flags' keys from a YAML; ``embedforge train`` refuses a merge config."""
    import numpy as np
    import yaml

    from embedforge.cli import main
    from embedforge.models.embedder import Embedder
    from embedforge.models.qwen3 import build_embedder

    other = build_embedder("tiny", max_length=64, seed=1).save(tmp_path / "other")
    config = tmp_path / "merge.yaml"
    config.write_text(yaml.safe_dump({"checkpoints": [str(tiny_embedder_dir), str(other)], "output": str(tmp_path / "merged")}))
    assert main(["merge", "--config", str(config)]) == 0
    assert f"merged 2 checkpoints (slerp) into {tmp_path / 'merged'}" in capsys.readouterr().out
    merged = Embedder.load(tmp_path / "merged", device="cpu").encode(["hello"])
    a, b = (Embedder.load(folder, device="cpu").encode(["hello"]) for folder in (tiny_embedder_dir, other))
    assert merged.shape == (1, 64) and not np.allclose(merged, a) and not np.allclose(merged, b)

    def error_of(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 2
        (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        return line

    assert "give --config or the flags (--method), not both" in error_of("merge", "--config", str(config), "--method", "linear")
    assert "flags: checkpoints, output: required" in error_of("merge", "--method", "linear")
    stage3 = tmp_path / "stage3.yaml"
    stage3.write_text(yaml.safe_dump({"stage": 3, "checkpoints": [str(tiny_embedder_dir), str(other)], "output": str(tmp_path / "m3")}))
    line = error_of("train", "--config", str(stage3))
    assert line == (f"embedforge train: error: {stage3}: stage: 3 is the merge, not training: "
                    f"run it with `embedforge merge --config {stage3}` (without the stage key)")
    assert f"{stage3}: stage: Extra inputs are not permitted" in error_of("merge", "--config", str(stage3))


def test_the_old_models_key_names_checkpoints():
    from embedforge.config import parse_config
    from embedforge.merge import MergeConfig

    with pytest.raises(ValueError, match=r"models: renamed checkpoints"):
        parse_config({"models": ["a", "b"]}, MergeConfig, "m.yaml")
