"""The trainable modules: what a train step calls, built the same way on workers and at export.

:func:`build_trainable` loads the base model, applies gradient checkpointing and LoRA, and
returns an ``nn.Module`` whose ``forward(input_ids, attention_mask)`` is what the loss
needs: embeddings ``(B, D)`` for the embedder, last-position logits ``(B, V)`` for the
yes/no reranker, one relevance logit ``(B,)`` for a cross-encoder reranker (which also
takes ``token_type_ids``). DDP and DeepSpeed wrap exactly this module, so their hooks see
every forward.

A reranker base is a yes/no judge when it is a causal LM, and a cross-encoder when it is a
sequence classifier or a bare encoder (a model type transformers knows as a masked LM,
e.g. all-MiniLM-L6-v2's ``BertModel``), whose one-logit head transformers initialises
(:func:`embedforge.models.reranker.reranker_settings`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from embedforge.models.prior import copy_prior
from embedforge.models.reranker import CrossEncoderReranker
from embedforge.training.config import LoraSection, TrainConfig


class JudgeLogits(nn.Module):
    """The yes/no reranker as a module whose forward returns last-position logits ``(B, V)``."""

    def __init__(self, reranker):
        super().__init__()
        self.reranker = reranker

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.reranker.judge_logits(input_ids, attention_mask)


def apply_lora(model: nn.Module, lora: LoraSection, modules_to_save: list[str] | None = None) -> nn.Module:
    """Wrap a Hugging Face model in peft LoRA adapters; only the adapters (and ``modules_to_save``) train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=modules_to_save,
    )
    return get_peft_model(model, config)


def backbone_of(module: nn.Module) -> nn.Module:
    """The Hugging Face model inside a trainable module."""
    if isinstance(module, JudgeLogits):
        return module.reranker.model
    return module.model if isinstance(module, CrossEncoderReranker) else module.backbone


def set_backbone(module: nn.Module, backbone: nn.Module) -> None:
    if isinstance(module, JudgeLogits):
        module.reranker.model = backbone
    elif isinstance(module, CrossEncoderReranker):
        module.model = backbone
    else:
        module.backbone = backbone


def build_trainable(config: TrainConfig, base_dir: str | Path, *, for_training: bool = True) -> nn.Module:
    """The base model as a trainable module on the CPU (strategies move it to the device)."""
    if config.model.kind == "embedder":
        from embedforge.models.embedder import Embedder

        module = Embedder.load(base_dir, device="cpu", attention=config.model.attention)
        freeze_pooler(module.backbone)
    else:
        from embedforge.models.reranker import YesNoReranker, load_reranker

        reranker = load_reranker(base_dir, device="cpu", new_head=True)
        if config.model.max_length is not None:
            reranker.settings = reranker.settings.model_copy(update={"max_length": config.model.max_length})
        if config.model.prior is not None:
            zero_head(reranker.model)
        module = JudgeLogits(reranker) if isinstance(reranker, YesNoReranker) else reranker
    backbone = backbone_of(module)
    if for_training and config.strategy.gradient_checkpointing:
        backbone.config.use_cache = False
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.strategy.lora is not None:
        # A cross-encoder's head (often new) must train too, beside the adapters.
        head = ["classifier", "score", "pooler"] if isinstance(module, CrossEncoderReranker) else None
        set_backbone(module, apply_lora(backbone, config.strategy.lora, modules_to_save=head))
    return module.train()


def freeze_pooler(backbone: nn.Module) -> None:
    """Freeze a BERT-family encoder's pooler, which an embedding never reads.

    Embeddings pool ``last_hidden_state`` (:mod:`embedforge.models.pooling`); the pooler's dense layer
    over ``[CLS]`` gets no gradient. Frozen, it stays out of the optimizer, and every
    parameter left trainable is used by every step, as DDP without
    ``find_unused_parameters`` requires.
    """
    pooler = getattr(backbone, "pooler", None)
    if isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)


def zero_head(model: nn.Module) -> None:
    """Zero a sequence classifier's output layer, so that a reranker with a prior starts as the prior."""
    layers = [module for name, module in model.named_modules() if name.split(".")[0] in ("classifier", "score") and isinstance(module, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no classifier or score layer to start from zero")
    nn.init.zeros_(layers[-1].weight)
    if layers[-1].bias is not None:
        nn.init.zeros_(layers[-1].bias)


def export_model(
    config: TrainConfig, base_dir: str | Path, state_dict: dict[str, torch.Tensor], folder: Path, prior_dir: Path | None = None
) -> Path:
    """Write trained weights as a plain model folder (LoRA merged) loadable by embedforge and sentence-transformers.

    ``prior_dir``: a saved reranker prior, copied into the folder's ``prior/``.
    """
    module = build_trainable(config, base_dir, for_training=False)
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"trained state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.strategy.lora is not None:
        set_backbone(module, backbone_of(module).merge_and_unload())
    target = module.reranker if isinstance(module, JudgeLogits) else module
    if config.model.kind == "embedder":
        target.settings = exported_settings(config, target.settings)
    folder.mkdir(parents=True, exist_ok=True)
    target.save(folder)
    if prior_dir is not None:
        copy_prior(prior_dir, folder)
    return folder


def exported_settings(config: TrainConfig, settings):
    """The embedder settings a trained model is saved with: what training taught it.

    - ``default_instruction``: the instruction training put on queries, so evaluation and
      serving format queries the same way (sentence-transformers ``prompts`` too): the
      first dataset's ``instruction`` that is set, else the base model's.
    - ``matryoshka_dimensions``: the prefixes the Matryoshka loss trained, if any.

    ``max_length`` stays the base model's: ``model.max_length`` only sets how the training
    data is tokenised (in Ray Data), not how long a text the model reads at inference.
    """
    instruction = next((spec.instruction for spec in config.data.datasets if spec.instruction is not None), settings.default_instruction)
    return settings.model_copy(
        update={
            "default_instruction": instruction,
            "matryoshka_dimensions": config.loss.matryoshka_dimensions or settings.matryoshka_dimensions,
        }
    )
