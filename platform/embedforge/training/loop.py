"""``train_func(config)``: the per-worker training loop that Ray Train runs.

It reads only its ``config`` dict (built by :mod:`embedforge.training.driver`), its
dataset shards and ``get_checkpoint()``. Each step draws its batch from the dataset the
shared schedule names, so all ranks train on the same task at the same step and the
gathered in-batch negatives come from one dataset.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import torch

from embedforge.training.batches import dataset_schedule
from embedforge.training.config import TrainConfig

SHUFFLE_BUFFER_ROWS = 20_000
"""Rows a worker buffers to reorder each epoch: a full shuffle of smaller shards."""


class MixtureBatches:
    """Per-step batches from per-dataset shards, following a schedule shared by all ranks.

    Every epoch of a dataset is read in a new order (a local shuffle of up to
    ``SHUFFLE_BUFFER_ROWS`` rows, seeded by ``seed`` and the epoch), so batches do not
    repeat from one epoch to the next. On resume at ``start_step`` each dataset starts the
    epoch it was in and skips the batches it already served there, so the data continue
    where the checkpoint left them.
    """

    def __init__(
        self,
        shards: dict[str, Any],
        schedule: list[str],
        batch_size: int,
        batches_per_epoch: dict[str, int],
        start_step: int,
        seed: int = 0,
    ):
        self.shards = shards
        self.schedule = schedule
        self.batch_size = batch_size
        self.seed = seed
        consumed = Counter(schedule[:start_step])
        self.iterators: dict[str, Iterator] = {
            name: itertools.islice(
                self._epochs(name, consumed[name] // batches_per_epoch[name]), consumed[name] % batches_per_epoch[name], None
            )
            for name in shards
        }

    def _epochs(self, name: str, first_epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        for epoch in itertools.count(first_epoch):
            yield from self.shards[name].iter_torch_batches(
                batch_size=self.batch_size,
                drop_last=True,
                local_shuffle_buffer_size=SHUFFLE_BUFFER_ROWS,
                local_shuffle_seed=self.seed * 100_003 + epoch,
            )

    def batch(self, step: int) -> tuple[str, dict[str, torch.Tensor]]:
        """The batch of 1-based ``step``."""
        name = self.schedule[step - 1]
        return name, next(self.iterators[name])


def batch_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int(sum(value.sum() for key, value in batch.items() if key.endswith("attention_mask")))


def train_func(config: dict[str, Any]) -> None:
    import ray.train

    from embedforge.training.metrics import ThroughputWindow, append_metrics
    from embedforge.training.modules import build_trainable, export_model
    from embedforge.training.progress import Progress
    from embedforge.training.steps import build_loss, embedder_loss, grad_cache_embedder_step, reranker_loss
    from embedforge.training.strategy import build_strategy

    cfg = TrainConfig.model_validate(config["train"])
    base_dir, run_dir = config["base_dir"], Path(config["run_dir"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.manual_seed(cfg.optim.seed)

    module = build_trainable(cfg, base_dir)
    judge = getattr(module, "reranker", None)  # the yes/no judge; cross-encoders score without token ids
    yes_id, no_id = getattr(judge, "yes_id", None), getattr(judge, "no_id", None)
    loss_fn = build_loss(cfg, yes_id, no_id)
    strategy = build_strategy(module, cfg.strategy, cfg.optim)

    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start_step = int(strategy.load(Path(folder))["step"])
    names = [spec.name for spec in cfg.data.datasets]
    schedule = dataset_schedule(names, [spec.weight for spec in cfg.data.datasets], cfg.optim.steps, cfg.data.seed)
    shards = {name: ray.train.get_dataset_shard(name) for name in names}
    batches = MixtureBatches(shards, schedule, cfg.optim.batch_size, config["batches_per_epoch"], start_step, cfg.data.seed)

    progress = Progress(cfg.run.name, cfg.optim.steps, start_step, bar=config["progress_bar"]) if rank == 0 else None

    window = ThroughputWindow()
    for step in range(start_step + 1, cfg.optim.steps + 1):
        name, batch = batches.batch(step)
        if cfg.model.kind == "reranker":
            with strategy.autocast():
                loss = reranker_loss(strategy.model, loss_fn, batch, yes_id, no_id)
            strategy.backward(loss)
        elif cfg.strategy.grad_cache_chunk_size:
            loss = grad_cache_embedder_step(
                strategy.model, loss_fn, batch, cfg.strategy.grad_cache_chunk_size, strategy.no_sync, strategy.autocast
            )
        else:
            with strategy.autocast():
                loss = embedder_loss(strategy.model, loss_fn, batch)
            strategy.backward(loss)
        lr = strategy.lr()
        strategy.step()
        window.add(float(loss.detach()), cfg.optim.batch_size, batch_tokens(batch))
        if progress is not None:
            progress.step()

        is_log = step % cfg.run.log_every == 0 or step == cfg.optim.steps
        is_checkpoint = step % cfg.run.checkpoint_every == 0 or step == cfg.optim.steps
        metrics: dict[str, Any] = {}
        if is_log:
            metrics = {"step": step, **window.summary(), "lr": lr, "dataset": name, "start_step": start_step, "time": time.time()}
            window.reset()
            if rank == 0:
                append_metrics(run_dir, metrics)
                progress.logged(step, metrics)
        if step in cfg.run.merge_steps:
            save_model(strategy, cfg, base_dir, run_dir, run_dir / "merge_candidates" / f"step_{step:06d}", export_model)
        if is_checkpoint:
            with tempfile.TemporaryDirectory() as folder:
                strategy.save(Path(folder), {"step": step})
                has_files = any(Path(folder).iterdir())
                checkpoint_out = ray.train.Checkpoint.from_directory(folder) if has_files else None
                ray.train.report({"step": step, **metrics}, checkpoint=checkpoint_out)
        elif is_log:
            ray.train.report(metrics)

    save_model(strategy, cfg, base_dir, run_dir, run_dir / "final_model", export_model)
    if progress is not None:
        progress.close()


def save_model(strategy, cfg: TrainConfig, base_dir: str, run_dir: Path, folder: Path, export_model) -> None:
    """Gather the full weights (a collective under ZeRO-3) and write a model folder on rank 0.

    A reranker's prior, which the driver saved in the run folder, goes into the model folder too.
    """
    import ray.train

    from embedforge.models.prior import PRIOR_FOLDER

    state = strategy.full_state_dict()
    if ray.train.get_context().get_world_rank() == 0:
        export_model(cfg, base_dir, state, folder, prior_dir=run_dir / PRIOR_FOLDER if cfg.model.prior else None)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
