"""Typed settings of the training stages 1 and 2.

One YAML file holds one :class:`TrainConfig` (``stage: 1`` or ``2``), read by
:func:`load_stage_config`. Stage 3, the merge, has its own config
(:class:`embedforge.merge.MergeConfig`, run by ``embedforge merge``). Field docstrings are the
documentation of every knob.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from embedforge.config import ConfigError, ConfigModel, DataPath, parse_config, read_yaml_mapping
from embedforge.session import RayConfig


class DatasetSpec(ConfigModel):
    """One source of the training mixture: rows with ``query``, ``positive``, ``negatives``, ``instruction``."""

    name: str
    path: DataPath
    """A ``.jsonl`` or ``.parquet`` file, or a folder of them."""
    weight: float = Field(1.0, gt=0)
    """Sampling weight: the share of steps whose batch comes from this dataset."""
    instruction: str | None = None
    """Query instruction for every row of this dataset; ``None`` keeps each row's own."""


class PriorSection(ConfigModel):
    """A cross-encoder reranker's prior (:mod:`embedforge.models.prior`)."""

    embedder: str
    """The first-stage embedder whose hits the reranker reorders (a folder, a packaged name, or ``@merge`` in a pipeline)."""
    embedder_weight: float = Field(20.0, gt=0)
    """Scale of the embedder's cosine: one over the temperature it was trained at."""
    lexical_weight: float = Field(0.0, ge=0)
    """Scale of BM25 over the training documents; 0 leaves it out."""


class ModelSection(ConfigModel):
    kind: Literal["embedder", "reranker"]
    base: str
    """Model folder or packaged model name (``all-MiniLM-L6-v2``) to start from."""
    max_length: int | None = Field(None, ge=8)
    """Document tokens (reranker: whole prompt); default: the model's saved max_length."""
    query_max_length: int = Field(64, ge=8)
    """Query tokens, instruction included (embedder only)."""
    attention: Literal["bidirectional", "causal"] | None = None
    """Decoder embedders: override the saved attention (the recipe trains bidirectionally)."""
    prior: PriorSection | None = None
    """Cross-encoder rerankers: learn a correction to the first-stage embedder's (and BM25's)
    scores instead of scoring from scratch (:mod:`embedforge.models.prior`)."""


class DataSection(ConfigModel):
    datasets: list[DatasetSpec] = Field(min_length=1)
    num_negatives: int = Field(1, ge=0)
    """Hard negatives per query. Rows with fewer are skipped and counted; 0 uses none."""
    seed: int = 0
    """Seed of the row shuffle and of the per-step dataset choice."""
    cache_tokenized: bool = True
    """Tokenise once and keep the token columns in Ray's object store for every epoch; set
    False to stream (re-tokenising each epoch) when they do not fit in the object store."""


class LossSection(ConfigModel):
    temperature: float = Field(0.05, gt=0)
    margin: float = Field(0.1, ge=0)
    use_hard_negatives: bool = True
    use_query_query: bool = True
    use_doc_doc: bool = True
    use_query_doc: bool = True
    share_hard_negatives: bool = False
    """Score each query against every row's hard negatives, not only its own (as MNRL does)."""
    gather_across_ranks: bool = True
    """Score each query against the in-batch documents of every worker."""
    matryoshka_dimensions: list[int] | None = None
    """Train these embedding prefixes with ``MatryoshkaLoss``; ``None`` trains the full size only."""
    matryoshka_weights: list[float] | None = None
    reranker_loss: Literal["pointwise", "listwise"] = "pointwise"
    """Reranker: next-token yes/no loss per pair, or cross-entropy over 1 positive + n negatives."""
    restrict_to_yes_no: bool = False
    """Pointwise reranker loss over the two logits [yes, no] instead of the full vocabulary."""
    listwise_temperature: float = Field(1.0, gt=0)


class OptimSection(ConfigModel):
    steps: int = Field(ge=1)
    """Optimizer steps of the whole run, resumes included."""
    batch_size: int = Field(8, ge=1)
    """Queries per worker per step; the contrastive batch is ``batch_size * num_workers``."""
    lr: float = Field(2e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)
    """Learning rate of a relevance head the base lacks (a cross-encoder's new ``classifier``);
    ``None`` uses ``lr``. At ``lr`` a head initialised near zero barely moves in a short run."""
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup, to 0 at ``steps``."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0


class LoraSection(ConfigModel):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class StrategySection(ConfigModel):
    name: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: Literal[1, 2, 3] = 2
    """DeepSpeed ZeRO stage; each has a preset (``DEEPSPEED_PRESETS``)."""
    deepspeed: dict[str, Any] = {}
    """Passed through to DeepSpeed, deep-merged over the preset (any DeepSpeed config key)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: DeepSpeed's bf16 mode, or autocast under DDP. Meant for GPUs."""
    gradient_checkpointing: bool = False
    grad_cache_chunk_size: int | None = Field(None, ge=1)
    """GradCache: embed in chunks of this many texts so the batch can outgrow memory (DDP only)."""
    lora: LoraSection | None = None
    """Train LoRA adapters (peft) instead of all weights; merged into the exported model."""


class ScalingSection(ConfigModel):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)


class RunSection(ConfigModel):
    name: str
    """Run name; submitting again with the same name and storage continues the run."""
    storage_path: DataPath = Path("runs")
    """Folder (or shared filesystem) for checkpoints, metrics and the final model."""
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    """Ray Train keeps only the newest N periodic checkpoints."""
    merge_steps: list[int] = []
    """Steps whose model is also kept under ``merge_candidates/`` for stage 3."""
    log_every: int = Field(10, ge=1)
    max_failures: int = Field(2, ge=0)
    """Worker failures survived by restarting from the latest checkpoint."""


class TrainConfig(ConfigModel):
    """Stage 1 (weakly supervised) or stage 2 (supervised) training of one model."""

    stage: Literal[1, 2]
    model: ModelSection
    data: DataSection
    loss: LossSection = LossSection()
    optim: OptimSection
    strategy: StrategySection = StrategySection()
    scaling: ScalingSection = ScalingSection()
    run: RunSection
    ray: RayConfig = RayConfig()
    """How the run finds Ray (a local one gets the machine's CPUs unless ``ray.num_cpus`` says otherwise)."""

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.model.kind == "reranker" and self.stage != 2:
            raise ValueError("the reranker is trained in stage 2 only")
        if self.model.kind == "reranker" and self.loss.reranker_loss == "listwise" and self.data.num_negatives < 1:
            raise ValueError("the listwise reranker loss needs data.num_negatives >= 1")
        if self.model.prior is not None and self.model.kind != "reranker":
            raise ValueError("model.prior applies to rerankers only")
        if self.strategy.grad_cache_chunk_size is not None:
            if self.strategy.name != "ddp":
                raise ValueError("strategy.grad_cache_chunk_size works with strategy.name: ddp only")
            if self.model.kind != "embedder":
                raise ValueError("strategy.grad_cache_chunk_size applies to the embedder only")
        bad = [step for step in self.run.merge_steps if not 1 <= step <= self.optim.steps]
        if bad:
            raise ValueError(f"run.merge_steps {bad} fall outside 1..optim.steps={self.optim.steps}")
        return self


DEEPSPEED_PRESETS: dict[int, dict[str, Any]] = {
    1: {"stage": 1},
    2: {"stage": 2, "overlap_comm": True, "contiguous_gradients": True, "reduce_scatter": True,
        "reduce_bucket_size": 200_000_000, "allgather_bucket_size": 200_000_000},
    3: {"stage": 3, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 200_000_000,
        "stage3_prefetch_bucket_size": 50_000_000, "stage3_param_persistence_threshold": 100_000,
        "stage3_gather_16bit_weights_on_model_save": True},
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, recursing into nested mappings."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def deepspeed_config(strategy: StrategySection, optim: OptimSection) -> dict[str, Any]:
    """The DeepSpeed config dict: ZeRO preset, precision and clipping, then the passthrough."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": optim.batch_size,
        "gradient_accumulation_steps": 1,
        "zero_optimization": DEEPSPEED_PRESETS[strategy.zero_stage],
        "bf16": {"enabled": strategy.precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if optim.max_grad_norm is not None:
        config["gradient_clipping"] = optim.max_grad_norm
    return deep_merge(config, strategy.deepspeed)


def parse_stage_config(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """A :class:`TrainConfig`; a merge config (``stage: 3``) is pointed to ``embedforge merge``."""
    stage = data.get("stage")
    if stage == 3:
        raise ConfigError(f"{source}: stage: 3 is the merge, not training: run it with `embedforge merge --config {source}` (without the stage key)")
    if stage not in (1, 2):
        raise ConfigError(f"{source}: stage: must be 1 or 2 (got {stage!r})")
    return parse_config(data, TrainConfig, source)


def load_stage_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config; errors name the file and the field or line."""
    return parse_stage_config(read_yaml_mapping(path), str(path))
