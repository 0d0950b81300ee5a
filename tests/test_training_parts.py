"""Training parts without Ray: configs, rows, tokenisation, mining, schedules, GradCache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from embedforge.config import ConfigError
from embedforge.training.batches import (
    TokenizeEmbedderPairs,
    TokenizeJudgeGroups,
    dataset_schedule,
    text_id,
    trim_padding,
)
from embedforge.training.config import deepspeed_config, load_stage_config, parse_stage_config
from embedforge.training.pairs import read_pair_rows, write_pair_rows

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["apple", "river", "engine", "violin", "galaxy", "protein", "glacier", "bridge"]


def toy_rows(n: int = 8) -> list[dict]:
    return [
        {"query": f"what about {t}?", "positive": f"{t} facts and {t} details", "negatives": [f"unrelated text {i}", f"noise {i}"], "instruction": None}
        for i, t in enumerate(TOPICS[:n])
    ]


def base_config(**overrides) -> dict:
    config = {
        "stage": 2,
        "model": {"kind": "embedder", "base": "all-MiniLM-L6-v2"},
        "data": {"datasets": [{"name": "a", "path": "x.jsonl"}]},
        "optim": {"steps": 4},
        "run": {"name": "r"},
    }
    config.update(overrides)
    return config


def test_qwen3_gpu_preset_is_zero2_bf16_checkpointed_bidirectional():
    config = load_stage_config(REPO / "jobs/configs/embedder_qwen3_0.6b_gpu.yaml")
    assert (config.strategy.name, config.strategy.zero_stage, config.strategy.precision) == ("deepspeed", 2, "bf16")
    assert config.strategy.gradient_checkpointing and config.model.attention == "bidirectional"
    ds = deepspeed_config(config.strategy, config.optim)
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] is True
    assert ds["zero_optimization"]["reduce_bucket_size"] == 100_000_000  # passthrough wins
    assert ds["zero_optimization"]["overlap_comm"] is True  # preset kept
    assert ds["train_micro_batch_size_per_gpu"] == 64


def test_bad_configs_name_the_field():
    with pytest.raises(ConfigError, match="stage"):
        parse_stage_config(base_config(stage=4))
    with pytest.raises(ConfigError, match="optim.steps"):
        parse_stage_config(base_config(optim={"steps": 0}))
    with pytest.raises(ConfigError, match="reranker is trained in stage 2 only"):
        parse_stage_config(base_config(stage=1, model={"kind": "reranker", "base": "x"}))
    with pytest.raises(ConfigError, match="grad_cache_chunk_size works with strategy.name: ddp"):
        parse_stage_config(base_config(strategy={"name": "deepspeed", "grad_cache_chunk_size": 2}))
    with pytest.raises(ConfigError, match="merge_steps"):
        parse_stage_config(base_config(run={"name": "r", "merge_steps": [9]}))
    with pytest.raises(ConfigError, match=r"stage: 3 is the merge, not training: run it with `embedforge merge --config"):
        parse_stage_config({"stage": 3, "checkpoints": ["a", "b"], "output": "o"})


def test_read_pair_rows_counts_skips_and_names_bad_lines(tmp_path):
    rows = toy_rows(3)
    rows[1]["negatives"] = [rows[1]["positive"]]  # only a copy of the positive: not a negative
    path = write_pair_rows(rows, tmp_path / "pairs.jsonl")
    read = read_pair_rows(path, num_negatives=1, instruction="Find it")
    assert len(read.rows) == 2 and read.skipped == {"too_few_negatives": 1}
    assert all(row["instruction"] == "Find it" and len(row["negatives"]) == 1 for row in read.rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"query": "q", "positive": ""}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'positive'"):
        read_pair_rows(bad, num_negatives=0)


def test_embedder_tokenisation_has_fixed_shapes_and_text_ids(tiny_embedder_dir):
    rows = toy_rows(4)
    stage = TokenizeEmbedderPairs(str(tiny_embedder_dir), query_max_length=48, max_length=32)
    out = stage({key: np.array([r[key] for r in rows], dtype=object) for key in ("query", "positive", "instruction")} | {"negatives": [np.array(r["negatives"]) for r in rows]})
    assert out["query_input_ids"].shape == (4, 48) and out["positive_input_ids"].shape == (4, 32)
    assert out["negative_input_ids"].shape == (4, 2, 32) and out["negative_ids"].shape == (4, 2)
    assert out["positive_ids"][0] == text_id(rows[0]["positive"])
    # Left padding, end token last: the query template with the default instruction was applied.
    last = out["query_input_ids"][0, -1]
    assert last == 151643 and out["query_attention_mask"][0, 0] == 0
    ids, mask = trim_padding(torch.as_tensor(out["query_input_ids"]), torch.as_tensor(out["query_attention_mask"]))
    assert mask.shape[1] < 48 and mask[:, 0].any() and mask[:, -1].all()


def test_judge_tokenisation_groups_positive_first(tiny_reranker_dir):
    rows = toy_rows(2)
    stage = TokenizeJudgeGroups(str(tiny_reranker_dir), max_length=128)
    out = stage({key: [r[key] for r in rows] for key in ("query", "positive", "negatives", "instruction")})
    assert out["input_ids"].shape == (2, 3, 128)
    from embedforge.models.reranker import load_reranker

    reranker = load_reranker(tiny_reranker_dir, device="cpu")
    expected = reranker.build_inputs(rows[0]["query"], [rows[0]["positive"]])
    width = int(expected["attention_mask"].sum())
    assert out["input_ids"][0, 0, -width:].tolist() == expected["input_ids"][0, -width:].tolist()


@pytest.mark.parametrize("loss", ["pointwise", "listwise"])
def test_reranker_step_overfits_four_groups_in_process(tiny_reranker_dir, loss):
    """The loop's reranker step without Ray: each loss falls on a fixed batch (the Ray run is in test_training_ray)."""
    from embedforge.training.modules import build_trainable
    from embedforge.training.steps import build_loss, reranker_loss

    config = parse_stage_config(base_config(model={"kind": "reranker", "base": str(tiny_reranker_dir), "max_length": 128}, loss={"reranker_loss": loss}))
    module = build_trainable(config, tiny_reranker_dir)
    judge = module.reranker
    loss_fn = build_loss(config, judge.yes_id, judge.no_id)
    rows = toy_rows(4)
    columns = TokenizeJudgeGroups(str(tiny_reranker_dir), max_length=128)({key: [r[key] for r in rows] for key in ("query", "positive", "negatives", "instruction")})
    batch = {key: torch.as_tensor(value) for key, value in columns.items()}
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        value = reranker_loss(module, loss_fn, batch, judge.yes_id, judge.no_id)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("kind, base", [("embedder", "minilm"), ("embedder", "tiny"), ("reranker", "minilm"), ("reranker", "tiny")])
def test_every_trainable_parameter_gets_a_gradient_from_one_step(kind, base, minilm_dir, tiny_embedder_dir, tiny_reranker_dir):
    """DDP runs without ``find_unused_parameters``: one step must reach every parameter left trainable."""
    from embedforge.training.batches import TokenizePairGroups
    from embedforge.training.modules import build_trainable
    from embedforge.training.steps import build_loss, embedder_loss, reranker_loss

    base_dir = {"minilm": minilm_dir, "tiny": tiny_embedder_dir if kind == "embedder" else tiny_reranker_dir}[base]
    config = parse_stage_config(base_config(model={"kind": kind, "base": str(base_dir), "max_length": 128}))
    module = build_trainable(config, base_dir)
    rows = toy_rows(2)
    columns = {key: [r[key] for r in rows] for key in ("query", "positive", "negatives", "instruction")}
    judge = getattr(module, "reranker", None)
    if kind == "embedder":
        stage = TokenizeEmbedderPairs(str(base_dir), query_max_length=32, max_length=64)
    else:
        stage = TokenizeJudgeGroups(str(base_dir), max_length=128) if judge else TokenizePairGroups(str(base_dir), max_length=128)
    batch = {key: torch.as_tensor(value) for key, value in stage(columns).items()}
    if kind == "embedder":
        loss = embedder_loss(module, build_loss(config), batch)
    else:
        ids = (judge.yes_id, judge.no_id) if judge else (None, None)
        loss = reranker_loss(module, build_loss(config, *ids), batch, *ids)
    loss.backward()
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    assert trainable and [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None] == []
    if (kind, base) == ("embedder", "minilm"):
        assert not any(".pooler." in name for name in trainable)


def test_dataset_schedule_follows_weights_and_seed():
    schedule = dataset_schedule(["a", "b"], [3.0, 1.0], 4000, seed=1)
    assert schedule == dataset_schedule(["a", "b"], [3.0, 1.0], 4000, seed=1)
    assert abs(schedule.count("a") / 4000 - 0.75) < 0.03


def test_grad_cache_matches_the_plain_step_for_loss_and_every_gradient(tiny_embedder_dir):
    """GradCache in chunks of 3 vs one forward per text group, on the same batch (4 rows, 2 negatives)."""
    from embedforge.losses import ImprovedInfoNCE, MatryoshkaLoss
    from embedforge.models.embedder import Embedder
    from embedforge.training.steps import embedder_loss, grad_cache_embedder_step

    rows = toy_rows(4)
    stage = TokenizeEmbedderPairs(str(tiny_embedder_dir), query_max_length=24, max_length=32)
    batch = {k: torch.as_tensor(v) for k, v in stage({key: [r[key] for r in rows] for key in rows[0]}).items()}
    loss_fn = MatryoshkaLoss(ImprovedInfoNCE(margin=math.inf), dimensions=[64, 32])

    def grads(step):
        # float64; what noise remains is float32 math inside Qwen3 (RMSNorm, RoPE tables at the
        # left-padding offsets that differ between a chunk and the whole batch).
        model = Embedder.load(tiny_embedder_dir, device="cpu", dtype=torch.float64).train()
        loss = step(model)
        return float(loss), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    def plain(model):
        loss = embedder_loss(model, loss_fn, batch)
        loss.backward()
        return loss

    plain_loss, plain_grads = grads(plain)
    cached_loss, cached_grads = grads(lambda model: grad_cache_embedder_step(model, loss_fn, batch, chunk_size=3))
    assert cached_loss == pytest.approx(plain_loss, rel=1e-7)
    assert plain_grads.keys() == cached_grads.keys() and len(plain_grads) > 10
    for name, grad in plain_grads.items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, name=name: f"{name}: {m}")


def test_lora_training_module_exports_merged_weights(tmp_path, tiny_embedder_dir):
    """Only LoRA adapters train; the exported folder has them merged and loads as a plain model."""
    from embedforge.models.embedder import Embedder
    from embedforge.training.modules import build_trainable, export_model

    config = parse_stage_config(
        base_config(
            model={"kind": "embedder", "base": str(tiny_embedder_dir)},
            strategy={"gradient_checkpointing": True, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        )
    )
    module = build_trainable(config, tiny_embedder_dir)
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    folder = export_model(config, tiny_embedder_dir, module.state_dict(), tmp_path / "exported")
    exported = Embedder.load(folder, device="cpu")
    assert not any("lora" in name for name in exported.state_dict())
    module.eval()
    batch = exported.tokenize(["hello world"])
    with torch.no_grad():
        expected = module(batch["input_ids"], batch["attention_mask"])
    np.testing.assert_allclose(exported.encode(["hello world"]), expected.numpy(), atol=1e-5)
    assert not np.allclose(exported.encode(["hello world"]), Embedder.load(tiny_embedder_dir, device="cpu").encode(["hello world"]), atol=1e-4)


def test_symmetric_rows_get_the_instruction_on_both_sides_and_query_ids(tiny_embedder_dir):
    from embedforge.training.batches import embedding_tokenizer, tokenize_pairs

    tokenizer, settings = embedding_tokenizer(tiny_embedder_dir)
    instruction = "Retrieve semantically similar text"
    kwargs = dict(query_template=settings.query_template, default_instruction=None, query_max_length=48, max_length=48)
    out = tokenize_pairs(
        tokenizer, ["a cat sat", "a cat sat", "a dog ran"], [instruction, instruction, instruction],
        ["the cat sat down", "a feline sat", "the dog ran off"], [[], [], []], symmetric=[True, True, False], **kwargs
    )
    formatted = tokenizer([f"Instruct: {instruction}\nQuery:the cat sat down", "the dog ran off"], padding="max_length", max_length=48, truncation=True)
    np.testing.assert_array_equal(out["positive_input_ids"][0], formatted["input_ids"][0])
    np.testing.assert_array_equal(out["positive_input_ids"][2], formatted["input_ids"][1])
    assert out["query_ids"][0] == out["query_ids"][1] != out["query_ids"][2]
    assert out["query_ids"][0] == text_id(f"Instruct: {instruction}\nQuery:a cat sat")


def test_read_pair_rows_marks_symmetric_task_types(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"query": q, "positive": "p", "negatives": [], "task_type": t}) + "\n" for q, t in [("a", "sts"), ("b", "retrieval"), ("c", "bitext"), ("d", None)]))
    assert [row["symmetric"] for row in read_pair_rows(path, num_negatives=0).rows] == [True, False, True, False]


def test_export_keeps_the_training_instruction_matryoshka_sizes_and_base_length(tmp_path, tiny_embedder_dir):
    """Evaluation and serving must format queries as training did: the export says how."""
    from sentence_transformers import SentenceTransformer

    from embedforge.models.embedder import Embedder, read_settings
    from embedforge.training.modules import build_trainable, export_model

    instruction = "Given a claim, retrieve abstracts"
    config = parse_stage_config(
        base_config(
            model={"kind": "embedder", "base": str(tiny_embedder_dir), "max_length": 16},
            data={"datasets": [{"name": "weak", "path": "w.jsonl"}, {"name": "claims", "path": "c.jsonl", "instruction": instruction}]},
            loss={"matryoshka_dimensions": [32, 64]},
        )
    )
    module = build_trainable(config, tiny_embedder_dir)
    assert module.settings.max_length == read_settings(tiny_embedder_dir).max_length != 16  # training length is the tokeniser's
    folder = export_model(config, tiny_embedder_dir, module.state_dict(), tmp_path / "exported")
    saved = read_settings(folder)
    assert saved.default_instruction == instruction and saved.matryoshka_dimensions == [32, 64]
    assert saved.max_length == read_settings(tiny_embedder_dir).max_length
    embedder = Embedder.load(folder, device="cpu")
    st = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(st.encode(["a claim"], prompt_name="query"), embedder.encode(["a claim"], query=True), atol=1e-5)
