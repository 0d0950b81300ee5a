"""Parallel strategies: plain DDP, or DeepSpeed ZeRO 1/2/3, behind one small Protocol.

A train step only needs ``model(...)``, ``backward``, ``step``, and for GradCache
``no_sync``; checkpoints need ``save``/``load`` (called on every rank) and export needs
the full weights on rank 0 (:meth:`full_state_dict`, which gathers ZeRO-3 shards).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, ContextManager, Protocol

import torch
from torch import nn

from embedforge.training.config import OptimSection, StrategySection, deepspeed_config

STATE_FILE = "trainer_state.pt"
DEEPSPEED_TAG = "deepspeed"


class Strategy(Protocol):
    model: nn.Module
    """Call this for forwards: the DDP wrapper or the DeepSpeed engine."""

    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> None: ...
    def lr(self) -> float: ...
    def no_sync(self) -> ContextManager: ...
    def autocast(self) -> ContextManager: ...
    def save(self, folder: Path, extra: dict[str, Any]) -> None: ...
    def load(self, folder: Path) -> dict[str, Any]: ...
    def full_state_dict(self) -> dict[str, torch.Tensor] | None: ...


def lr_lambda(optim: OptimSection):
    """Multiplier of the base learning rate at a step: linear warmup, then the chosen decay."""

    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return 1.0
        progress = (step - optim.warmup_steps) / max(1, optim.steps - optim.warmup_steps)
        progress = min(progress, 1.0)
        return 1.0 - progress if optim.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


HEAD_PARTS = ("model.classifier.", "model.score.", ".pooler.")
"""Parameter names of a cross-encoder's relevance head: BERT's ``classifier`` and ``pooler``
(neither is in a sentence-transformers encoder), a decoder classifier's ``score``."""


def is_head(name: str) -> bool:
    return name.startswith(HEAD_PARTS[:2]) or HEAD_PARTS[2] in name


def make_optimizer(module: nn.Module, optim: OptimSection) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; a relevance head gets ``optim.head_lr`` when set.

    The fused kernel (one pass over all parameters, CPU and CUDA) is the update
    ``SentenceTransformerTrainer`` uses too; the default per-tensor loop took about twice as
    long per step for all-MiniLM-L6-v2 (docs/benchmarks.md, training_throughput).
    """
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    head = [p for name, p in named if optim.head_lr is not None and is_head(name)]
    body = [p for name, p in named if not (optim.head_lr is not None and is_head(name))]
    groups = [{"params": body, "lr": optim.lr}] + ([{"params": head, "lr": optim.head_lr}] if head else [])
    return torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay, fused=True)


class DDPStrategy:
    """Plain data parallelism (``ray.train.torch.prepare_model``); one process keeps the module as is.

    Every trainable parameter takes part in every step (:func:`build_trainable` freezes what
    a forward skips), so DDP does not search the graph for unused ones.
    """

    def __init__(self, module: nn.Module, strategy: StrategySection, optim: OptimSection):
        import ray.train.torch

        self.module = module
        self.device = ray.train.torch.get_device()
        self.model = ray.train.torch.prepare_model(module)
        self.optimizer = make_optimizer(module, optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(optim))
        self.max_grad_norm = optim.max_grad_norm
        self.bf16 = strategy.precision == "bf16"

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def no_sync(self) -> ContextManager:
        return self.model.no_sync() if hasattr(self.model, "no_sync") else contextlib.nullcontext()

    def autocast(self) -> ContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def save(self, folder: Path, extra: dict[str, Any]) -> None:
        import ray.train

        if ray.train.get_context().get_world_rank() == 0:
            state = {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "extra": extra,
            }
            torch.save(state, folder / STATE_FILE)

    def load(self, folder: Path) -> dict[str, Any]:
        state = torch.load(folder / STATE_FILE, map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return state["extra"]

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        import ray.train

        if ray.train.get_context().get_world_rank() != 0:
            return None
        return {key: value.detach().cpu().clone() for key, value in self.module.state_dict().items()}


class DeepSpeedStrategy:
    """DeepSpeed ZeRO with the config from :func:`deepspeed_config`; gloo on CPU, NCCL on GPU."""

    def __init__(self, module: nn.Module, strategy: StrategySection, optim: OptimSection):
        import deepspeed
        import ray.train.torch

        self.device = ray.train.torch.get_device()
        self.zero_stage = strategy.zero_stage
        optimizer = make_optimizer(module.to(self.device), optim)
        self.model, _, _, self.scheduler = deepspeed.initialize(
            model=module,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(optim)),
            config=deepspeed_config(strategy, optim),
        )
        self.module = self.model.module

    def backward(self, loss: torch.Tensor) -> None:
        self.model.backward(loss)

    def step(self) -> None:
        self.model.step()

    def lr(self) -> float:
        return float(self.model.get_lr()[0])

    def no_sync(self) -> ContextManager:
        return contextlib.nullcontext()

    def autocast(self) -> ContextManager:
        return contextlib.nullcontext()

    def save(self, folder: Path, extra: dict[str, Any]) -> None:
        self.model.save_checkpoint(str(folder), tag=DEEPSPEED_TAG, client_state={"extra": extra})

    def load(self, folder: Path) -> dict[str, Any]:
        path, client_state = self.model.load_checkpoint(str(folder), tag=DEEPSPEED_TAG)
        if path is None:
            raise RuntimeError(f"{folder}: no DeepSpeed checkpoint with tag {DEEPSPEED_TAG!r}")
        return client_state["extra"]

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        import deepspeed
        import ray.train

        is_rank0 = ray.train.get_context().get_world_rank() == 0
        gather = (
            deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)
            if self.zero_stage == 3
            else contextlib.nullcontext()
        )
        with gather:
            if not is_rank0:
                return None
            return {key: value.detach().cpu().float().clone() for key, value in self.module.state_dict().items()}


def build_strategy(module: nn.Module, strategy: StrategySection, optim: OptimSection) -> Strategy:
    if strategy.name == "deepspeed":
        return DeepSpeedStrategy(module, strategy, optim)
    return DDPStrategy(module, strategy, optim)
