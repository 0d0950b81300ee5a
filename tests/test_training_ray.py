"""Training stages on a real local Ray Train cluster: 2 CPU workers, tiny Qwen3 models.

Each run pays Ray Train and worker start-up (about 20-60 s here), so these are marked slow.
DeepSpeed compiles its CPU comm op once into ``TORCH_EXTENSIONS_DIR`` (about 45 s the first
time): ``make setup`` builds it into ``.venv/torch_extensions``, the default here too.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embedforge.config import parse_config
from embedforge.training.config import TrainConfig
from embedforge.training.pairs import write_pair_rows

os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))

TOPICS = ["apple", "river", "engine", "violin", "galaxy", "protein", "glacier", "bridge",
          "coffee", "tiger", "laser", "desert", "compiler", "harbor", "vaccine", "volcano"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_pairs(tmp_path_factory) -> Path:
    rows = [
        {"query": f"what about {t}?", "positive": f"{t} facts and {t} details", "negatives": [f"unrelated text number {i}"], "instruction": None}
        for i, t in enumerate(TOPICS)
    ]
    return write_pair_rows(rows, tmp_path_factory.mktemp("pairs") / "toy.jsonl")


def tiny_config(model_dir: Path, data: Path, storage: Path, name: str, *, kind: str = "embedder", steps: int = 12, **sections) -> TrainConfig:
    raw = {
        "stage": 2,
        "model": {"kind": kind, "base": str(model_dir), "max_length": 32 if kind == "embedder" else 160, "query_max_length": 16},
        "data": {"datasets": [{"name": "toy", "path": str(data)}], "num_negatives": 1},
        # The margin rule masks most terms of a random model, so its loss is not comparable
        # across steps; without it the loss must fall while overfitting.
        "loss": {"margin": math.inf},
        "optim": {"steps": steps, "batch_size": 4, "lr": 1e-3, "schedule": "constant"},
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "run": {"name": name, "storage_path": str(storage), "checkpoint_every": 4, "log_every": 2, "keep_checkpoints": 2},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw, TrainConfig, name)


def first_and_last_loss(result) -> tuple[float, float]:
    return result.metrics[0]["loss"], result.metrics[-1]["loss"]


@pytest.mark.parametrize(
    "strategy",
    [{"name": "ddp"}, {"name": "deepspeed", "zero_stage": 2}, {"name": "deepspeed", "zero_stage": 3}],
    ids=["ddp", "zero2", "zero3"],
)
def test_embedder_overfits_and_exports(local_ray, tiny_embedder_dir, toy_pairs, tmp_path, strategy):
    from sentence_transformers import SentenceTransformer

    from embedforge.models.embedder import Embedder

    config = tiny_config(
        tiny_embedder_dir, toy_pairs, tmp_path, f"tiny-{strategy.get('zero_stage', 'ddp')}", strategy=strategy, run={"merge_steps": [8]}
    )
    result = from_training(config)
    first, last = first_and_last_loss(result)
    assert [m["step"] for m in result.metrics] == [2, 4, 6, 8, 10, 12]
    assert last < 0.5 * first, result.metrics
    assert all(m["samples_per_s"] > 0 and m["tokens_per_s"] > m["samples_per_s"] for m in result.metrics)
    assert result.loss_curve.is_file() and result.loss_curve.stat().st_size > 1000
    assert sorted(result.merge_candidates) == [8]
    # checkpoints at steps 4, 8 and 12; Ray keeps the newest 2 and evicts asynchronously, so
    # the one reported last may not have triggered its eviction yet when fit() returns.
    assert 2 <= len(list(result.run_dir.glob("checkpoint_*"))) <= 3

    trained = Embedder.load(result.final_model, device="cpu")
    texts = ["what about tiger?", "tiger facts and tiger details"]
    ours = trained.encode(texts)
    theirs = SentenceTransformer(str(result.final_model), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    base = Embedder.load(tiny_embedder_dir, device="cpu").encode(texts)
    assert not np.allclose(ours, base, atol=1e-3)  # the exported weights are the trained ones


def from_training(config):
    from embedforge.training import run_training

    return run_training(config)


def test_killed_worker_resumes_and_resubmission_continues(local_ray, tiny_embedder_dir, toy_pairs, tmp_path):
    """SIGKILL a training worker after step 8 is checkpointed; the run restarts from it and ends at step 24."""
    from ray._private.state import actors  # the public state API needs the dashboard, which local_ray turns off

    config = tiny_config(tiny_embedder_dir, toy_pairs, tmp_path, "killed", steps=24)
    metrics_file = tmp_path / "killed" / "metrics.jsonl"
    killed: list[int] = []

    def kill_after_step_8():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            lines = metrics_file.read_text().splitlines() if metrics_file.exists() else []
            if any(json.loads(line)["step"] >= 10 for line in lines):
                workers = [
                    info for info in actors().values() if info["ActorClassName"].endswith("RayTrainWorker") and info["State"] == "ALIVE"
                ]
                if workers:
                    pid = workers[-1]["Pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_step_8, daemon=True)
    watcher.start()
    result = from_training(config)
    watcher.join(timeout=5)
    assert killed, "the test never killed a worker"
    assert result.metrics[-1]["step"] == 24
    starts = {m["start_step"] for m in result.metrics}
    assert starts & {8, 12}, f"no record shows a resume from a checkpoint: {starts}"
    raw_steps = [json.loads(line)["step"] for line in metrics_file.read_text().splitlines()]
    assert len(raw_steps) > len(set(raw_steps))  # steps after the checkpoint ran twice

    more = config.model_copy(update={"optim": config.optim.model_copy(update={"steps": 28})})
    again = from_training(more)
    assert again.metrics[-1]["step"] == 28 and again.metrics[-1]["start_step"] == 24


def test_cross_worker_gradients_equal_one_process_on_the_whole_batch(local_ray, tiny_embedder_dir, toy_pairs, tmp_path):
    """Two workers (gather_across_ranks, DDP averaging) give the gradient of one process on 8 rows."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from embedforge.losses import ImprovedInfoNCE
    from embedforge.models.embedder import Embedder
    from embedforge.training.batches import TokenizeEmbedderPairs
    from embedforge.training.pairs import read_pair_rows
    from embedforge.training.steps import embedder_loss

    rows = read_pair_rows(toy_pairs, num_negatives=1).rows[:8]
    stage = TokenizeEmbedderPairs(str(tiny_embedder_dir), query_max_length=16, max_length=32)
    batch = {k: torch.as_tensor(v) for k, v in stage({key: [r[key] for r in rows] for key in rows[0]}).items()}
    config = tiny_config(tiny_embedder_dir, toy_pairs, tmp_path, "grads", loss={"margin": 0.1})
    out = tmp_path / "rank0_grads.pt"

    def train_func(cfg):
        from embedforge.training.modules import build_trainable
        from embedforge.training.steps import build_loss
        from embedforge.training.strategy import build_strategy

        train = TrainConfig.model_validate(cfg["train"])
        rank = ray.train.get_context().get_world_rank()
        module = build_trainable(train, cfg["base_dir"])
        strategy = build_strategy(module, train.strategy, train.optim)
        local = {k: v[rank * 4 : rank * 4 + 4] for k, v in cfg["batch"].items()}
        strategy.backward(embedder_loss(strategy.model, build_loss(train), local))
        if rank == 0:
            torch.save({n: p.grad for n, p in module.named_parameters() if p.grad is not None}, cfg["out"])

    TorchTrainer(
        train_func,
        train_loop_config={"train": config.model_dump(), "base_dir": str(tiny_embedder_dir), "batch": batch, "out": str(out)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name="grads", storage_path=str(tmp_path)),
    ).fit()
    distributed = torch.load(out)

    model = Embedder.load(tiny_embedder_dir, device="cpu").train()
    embedder_loss(model, ImprovedInfoNCE(margin=0.1), batch).backward()
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert single.keys() == distributed.keys()
    for name, grad in single.items():
        torch.testing.assert_close(distributed[name], grad, rtol=1e-3, atol=1e-5 * float(grad.abs().max()), msg=lambda m, name=name: f"{name}: {m}")


def test_reranker_trains_and_scores_through_the_cli(local_ray, tiny_reranker_dir, toy_pairs, tmp_path):
    """Listwise here; both losses' steps are checked without Ray in test_training_parts."""
    from embedforge.cli import main

    config = tiny_config(tiny_reranker_dir, toy_pairs, tmp_path, "rerank", kind="reranker", steps=8, loss={"reranker_loss": "listwise"})
    result = from_training(config)
    first, last = first_and_last_loss(result)
    assert last < first, result.metrics
    documents = tmp_path / "docs.txt"
    documents.write_text("tiger facts and tiger details\nunrelated text number 3\n")
    scores_file = tmp_path / "scores.json"
    assert main(["score", "--model", str(result.final_model), "--query", "what about tiger?", "--input", str(documents), "--output", str(scores_file)]) == 0
    scores = json.loads(scores_file.read_text())
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
    assert scores[0] > scores[1]


def test_minilm_cross_encoder_trains_and_scores_through_the_cli(local_ray, minilm_dir, toy_pairs, tmp_path):
    """The packaged all-MiniLM-L6-v2 (a bare BERT encoder) becomes a pair cross-encoder on 1 worker."""
    from sentence_transformers import CrossEncoder

    from embedforge.cli import main
    from embedforge.models.reranker import CrossEncoderReranker, load_reranker

    config = tiny_config(
        minilm_dir, toy_pairs, tmp_path, "cross-encoder", kind="reranker", steps=8,
        model={"max_length": 64}, loss={"reranker_loss": "listwise"}, optim={"lr": 1e-4}, scaling={"num_workers": 1},
    )
    result = from_training(config)
    first, last = first_and_last_loss(result)
    assert last < first, result.metrics
    reranker = load_reranker(result.final_model, device="cpu")
    assert isinstance(reranker, CrossEncoderReranker) and (reranker.settings.prompt_format, reranker.settings.max_length) == ("pair", 64)
    documents = tmp_path / "docs.txt"
    documents.write_text("tiger facts and tiger details\nunrelated text number 3\n")
    scores_file = tmp_path / "scores.json"
    assert main(["score", "--model", str(result.final_model), "--query", "what about tiger?", "--input", str(documents), "--output", str(scores_file)]) == 0
    scores = json.loads(scores_file.read_text())
    assert len(scores) == 2 and scores[0] > scores[1]
    pairs = [("what about tiger?", "tiger facts and tiger details"), ("what about tiger?", "unrelated text number 3")]
    np.testing.assert_allclose(scores, CrossEncoder(str(result.final_model), device="cpu").predict(pairs), atol=1e-5)


def test_cross_encoder_with_a_prior_trains_on_ray_and_scores_with_its_prior(local_ray, minilm_dir, toy_pairs, tmp_path):
    """The prior is built on the driver, fed to the loss as a column, and exported with the model."""
    from sentence_transformers import CrossEncoder

    from embedforge.cli import main
    from embedforge.models.prior import FirstStagePrior
    from embedforge.models.reranker import load_reranker

    config = tiny_config(
        minilm_dir, toy_pairs, tmp_path, "with-prior", kind="reranker", steps=4,
        model={"max_length": 64, "prior": {"embedder": str(minilm_dir), "lexical_weight": 0.2}},
        loss={"reranker_loss": "listwise"}, optim={"lr": 1e-4}, scaling={"num_workers": 1},
    )
    result = from_training(config)
    prior = FirstStagePrior.load(result.final_model / "prior", device="cpu")
    assert prior.lexical is not None and (prior.embedder_weight, prior.lexical_weight) == (20.0, 0.2)
    reranker = load_reranker(result.final_model, device="cpu")
    documents = ["tiger facts and tiger details", "unrelated text number 3"]
    documents_file = tmp_path / "docs.txt"
    documents_file.write_text("\n".join(documents) + "\n")
    scores_file = tmp_path / "scores.json"
    assert main(["score", "--model", str(result.final_model), "--query", "what about tiger?", "--input", str(documents_file), "--output", str(scores_file)]) == 0
    scores = json.loads(scores_file.read_text())
    np.testing.assert_allclose(scores, reranker.score("what about tiger?", documents), rtol=1e-5)
    correction = CrossEncoder(str(result.final_model), device="cpu", activation_fn=torch.nn.Identity()).predict([("what about tiger?", d) for d in documents])
    logits = reranker.score("what about tiger?", documents, logits=True)
    np.testing.assert_allclose(logits, correction + prior.scores("what about tiger?", documents), rtol=1e-4, atol=1e-4)
    assert logits[0] > logits[1] and scores[0] > scores[1]
