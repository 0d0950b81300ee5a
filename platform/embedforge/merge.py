"""Model merging, the recipe's third stage: slerp of checkpoints saved during fine-tuning.

The tensor functions are pure and work on state dicts; :func:`merge_checkpoints` adds the
folder I/O, so a merged folder loads exactly like the checkpoints it came from.
:class:`MergeConfig` and :func:`run_merge` are the stage: ``embedforge merge`` (flags or
``--config``) and the pipeline's ``merge`` section both run it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from pydantic import Field, model_validator

from embedforge.config import ConfigError, ConfigModel, DataPath

if TYPE_CHECKING:
    from torch import Tensor

StateDict = Mapping[str, "Tensor"]
MergeMethod = Literal["slerp", "linear"]

WEIGHTS_NAME = "model.safetensors"

# Top-level files merge_checkpoints does not copy: the weights it rewrites, and the
# training state a Trainer or DeepSpeed leaves next to them, which a merged model has no
# use for (and optimizer.pt is twice the model's size).
_NOT_COPIED = (
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
    "pytorch_model.bin.index.json",
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
    "global_step*",
    "latest",
    "zero_to_fp32.py",
)


def lerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """``(1 - t) * a + t * b``, computed in at least float32 and cast back to a's dtype."""
    import torch

    work = torch.promote_types(a.dtype, torch.float32)
    return ((1 - t) * a.to(work) + t * b.to(work)).to(a.dtype)


def slerp(a: Tensor, b: Tensor, t: float, eps: float = 1e-4) -> Tensor:
    r"""Spherical interpolation from ``a`` (t = 0) to ``b`` (t = 1), treating each as one vector.

    Directions move along the great circle between :math:`\hat a` and :math:`\hat b`;
    norms interpolate linearly:

    .. math::

        \mathrm{slerp}(a, b, t) = \big((1-t)\|a\| + t\|b\|\big)
            \frac{\sin((1-t)\theta)\,\hat a + \sin(t\theta)\,\hat b}{\sin\theta},
        \quad \cos\theta = \hat a \cdot \hat b

    So with :math:`\|a\| = \|b\|` the result keeps that norm at every t, where a linear
    average of two weight tensors shrinks it; that norm loss is why merging with slerp
    beats plain averaging. When the directions are nearly parallel or anti-parallel
    (:math:`|\cos\theta| > 1 - \text{eps}`, where :math:`\sin\theta` is too small to divide
    by) or either tensor is zero, it falls back to :func:`lerp`. Integer and bool tensors
    (buffers such as position ids) cannot be interpolated: they come from ``a`` when
    ``t < 0.5``, else from ``b``. The math runs in at least float32 and the result has
    ``a``'s dtype.
    """
    import torch

    if a.shape != b.shape:
        raise ValueError(f"slerp needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    if not (a.is_floating_point() and b.is_floating_point()):
        return (a if t < 0.5 else b).clone()
    work = torch.promote_types(a.dtype, torch.float32)
    va, vb = a.reshape(-1).to(work), b.reshape(-1).to(work)  # (P,)
    norm_a, norm_b = va.norm(), vb.norm()
    if norm_a == 0 or norm_b == 0:
        return lerp(a, b, t)
    ua, ub = va / norm_a, vb / norm_b  # (P,)
    cos = (ua @ ub).clamp(-1.0, 1.0).item()
    if abs(cos) > 1.0 - eps:
        return lerp(a, b, t)
    theta = math.acos(cos)
    direction = (math.sin((1 - t) * theta) * ua + math.sin(t * theta) * ub) / math.sin(theta)
    norm = (1 - t) * norm_a + t * norm_b
    return (direction * norm).reshape(a.shape).to(a.dtype)


def slerp_state_dicts(sd_a: StateDict, sd_b: StateDict, t: float) -> dict[str, Tensor]:
    """:func:`slerp` every tensor of two state dicts with the same keys and shapes."""
    _check_compatible([sd_a, sd_b])
    return {key: slerp(sd_a[key], sd_b[key], t) for key in sd_a}


def merge_state_dicts(
    state_dicts: Sequence[StateDict],
    weights: Sequence[float] | None = None,
    method: MergeMethod = "slerp",
) -> dict[str, Tensor]:
    r"""Merge N state dicts with the same keys and shapes into one.

    Weights must be >= 0 with a positive sum and are normalised to sum to 1; default all
    equal. A state dict with weight 0 is still checked for compatibility but contributes
    nothing, so weights ``[1, 0, ...]`` give back the first state dict exactly.

    - ``"linear"``: :math:`\sum_k w_k \theta_k` per tensor.
    - ``"slerp"``: slerp is defined for two points, so N points merge pairwise in order:
      :math:`m_1 = \theta_1`, :math:`m_k = \mathrm{slerp}(m_{k-1}, \theta_k, t_k)` with
      :math:`t_k = w_k / \sum_{j \le k} w_j`. Each step gives the new point its share of
      the weight seen so far, so for two state dicts it is plain slerp with
      :math:`t = w_2 / (w_1 + w_2)`, and in the linear limit it reproduces the weighted
      average. Beyond two, the result depends on the order (slerp is not associative).

    Integer tensors (usually identical everywhere) cannot be averaged: ``"linear"`` takes
    them from the state dict with the largest weight (the first of equals), ``"slerp"``
    from whichever side of each pairwise step has ``t`` on its side (see :func:`slerp`).
    Float results have the first state dict's dtype.
    """
    if not state_dicts:
        raise ValueError("need at least one state dict to merge")
    if method not in ("slerp", "linear"):
        raise ValueError(f"method must be 'slerp' or 'linear', got {method!r}")
    norm_weights = _normalised_weights(weights, len(state_dicts))
    _check_compatible(state_dicts)
    kept = [(sd, w) for sd, w in zip(state_dicts, norm_weights) if w > 0]
    if method == "linear":
        return _linear(kept)
    if len(kept) == 1:
        return {key: value.clone() for key, value in kept[0][0].items()}
    merged, seen = dict(kept[0][0]), kept[0][1]
    for sd, w in kept[1:]:
        seen += w
        t = min(w / seen, 1.0)
        merged = {key: slerp(merged[key], sd[key], t) for key in merged}
    return merged


def _linear(kept: Sequence[tuple[StateDict, float]]) -> dict[str, Tensor]:
    """Weighted average of state dicts whose weights already sum to 1."""
    import torch

    heaviest = max(kept, key=lambda pair: pair[1])[0]
    merged: dict[str, Tensor] = {}
    for key, first in kept[0][0].items():
        if not first.is_floating_point():
            merged[key] = heaviest[key].clone()
            continue
        work = torch.promote_types(first.dtype, torch.float32)
        total = sum(w * sd[key].to(work) for sd, w in kept)
        merged[key] = total.to(first.dtype)
    return merged


def _normalised_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Validate merge weights and scale them to sum to 1."""
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} state dicts")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def _check_compatible(state_dicts: Sequence[StateDict], names: Sequence[str] | None = None) -> None:
    """Raise ValueError naming the first key whose presence or shape differs, and where.

    ``names`` label the state dicts in the message (their folders); default ``state dict i``.
    """
    names = list(names) if names is not None else [f"state dict {index}" for index in range(len(state_dicts))]
    reference = state_dicts[0]
    for index, sd in enumerate(state_dicts[1:], start=1):
        missing = sorted(set(reference) - set(sd))
        extra = sorted(set(sd) - set(reference))
        if missing or extra:
            key = (missing or extra)[0]
            where = names[index] if missing else names[0]
            raise ValueError(
                f"{names[0]} and {names[index]} do not fit: key {key!r} is missing from {where} ({len(missing)} missing from "
                f"{names[index]}, {len(extra)} only there); merging needs identical keys"
            )
        for key, tensor in reference.items():
            if sd[key].shape != tensor.shape:
                raise ValueError(
                    f"key {key!r} has shape {tuple(tensor.shape)} in {names[0]} but "
                    f"{tuple(sd[key].shape)} in {names[index]}"
                )


def load_checkpoint_weights(folder: Path) -> dict[str, Tensor]:
    """Load the model weights stored at the top level of a Hugging Face or ST folder.

    Looks for, in order: ``model.safetensors``; sharded ``model-*.safetensors`` (the files
    named by ``model.safetensors.index.json`` when present); ``pytorch_model.bin``;
    sharded ``pytorch_model-*.bin``. Sub-folders (for example a sentence-transformers
    ``2_Dense/``) are not read. Raises FileNotFoundError naming the folder when there is
    nothing to load.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / WEIGHTS_NAME).is_file():
        return load_file(folder / WEIGHTS_NAME)
    shards = _shard_files(folder, "model.safetensors.index.json", "model-*.safetensors")
    if shards:
        return {k: v for shard in shards for k, v in load_file(shard).items()}
    if (folder / "pytorch_model.bin").is_file():
        return _load_bin(folder / "pytorch_model.bin")
    shards = _shard_files(folder, "pytorch_model.bin.index.json", "pytorch_model-*.bin")
    if shards:
        return {k: v for shard in shards for k, v in _load_bin(shard).items()}
    raise FileNotFoundError(
        f"no model weights in {folder}: expected model.safetensors, model-*.safetensors, "
        "or pytorch_model.bin at its top level"
    )


def _shard_files(folder: Path, index_name: str, pattern: str) -> list[Path]:
    """Shard paths from the index json if there is one, else by file-name pattern."""
    index = folder / index_name
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(folder.glob(pattern))


def _load_bin(path: Path) -> dict[str, Tensor]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def merge_checkpoints(
    checkpoint_dirs: Sequence[Path],
    output_dir: Path,
    weights: Sequence[float] | None = None,
    method: MergeMethod = "slerp",
) -> Path:
    """Merge checkpoint folders into ``output_dir`` and return it.

    Each folder is a ``save_pretrained`` output or a sentence-transformers model folder
    (whose transformer weights sit at the top level). The top-level weights of every
    folder are merged with :func:`merge_state_dicts` and written as one
    ``model.safetensors``; every other file and sub-folder (config.json, tokenizer files,
    modules.json, config_sentence_transformers.json, sentence_bert_config.json,
    ``1_Pooling/``, ...) is copied from the first checkpoint, so the output loads the way
    the inputs do. Training state (optimizer, scheduler, RNG, trainer state, DeepSpeed
    ``global_step*``) is left behind. All state dicts are held in memory at once: budget
    about (N + 1) times the model size in RAM.

    ``output_dir`` must not exist or be empty, and must not be one of the inputs.
    """
    from safetensors.torch import save_file

    checkpoint_dirs = [Path(d) for d in checkpoint_dirs]
    output_dir = Path(output_dir)
    if not checkpoint_dirs:
        raise ValueError("need at least one checkpoint folder to merge")
    for folder in checkpoint_dirs:
        if not folder.is_dir():
            raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"output folder {output_dir} is not empty")
    state_dicts = [load_checkpoint_weights(folder) for folder in checkpoint_dirs]
    _check_compatible(state_dicts, [str(folder) for folder in checkpoint_dirs])
    merged = merge_state_dicts(state_dicts, weights, method)
    output_dir.mkdir(parents=True, exist_ok=True)
    _copy_non_weight_files(checkpoint_dirs[0], output_dir)
    tensors = {key: value.contiguous() for key, value in merged.items()}
    save_file(tensors, output_dir / WEIGHTS_NAME, metadata={"format": "pt"})
    return output_dir


def _copy_non_weight_files(source: Path, target: Path) -> None:
    """Copy everything at ``source`` except top-level weights and training state."""
    for entry in sorted(source.iterdir()):
        if any(entry.match(pattern) for pattern in _NOT_COPIED):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)


class MergeConfig(ConfigModel):
    """``embedforge merge``: slerp (or linear) merge of model checkpoints into one loadable model.

    The same config is a pipeline's ``merge`` section, where ``checkpoints`` may name stage
    references and both ``checkpoints`` and ``output`` may be left out.
    """

    checkpoints: list[str] | None = Field(None, min_length=2)
    """Model folders or packaged model names, in merge order (slerp is not associative), e.g.
    ``runs/NAME/merge_candidates/step_000100``. In a pipeline also stage references
    (``"@stage2"``, ``"@stage2_from_base"``, as LM-Cocktail merges models of different starts),
    and ``None`` merges the checkpoints stage 2 kept at ``run.merge_steps``, oldest first.
    Required by ``embedforge merge``."""
    weights: list[float] | None = None
    """One weight per checkpoint, >= 0 and not all zero, normalised to sum to 1; ``None`` weighs them equally."""
    method: MergeMethod = "slerp"
    """``slerp`` keeps the weights' norms (see :func:`slerp`); ``linear`` is the weighted average."""
    output: DataPath | None = None
    """Folder for the merged model, missing or empty unless ``overwrite``. Required by
    ``embedforge merge``; in a pipeline the default is ``model/`` in the stage's own folder."""
    overwrite: bool = False
    """Replace a non-empty ``output`` folder (only once the merge has succeeded)."""

    @model_validator(mode="before")
    @classmethod
    def _no_models_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "models" in data:
            raise ValueError("models: renamed checkpoints (the same list), as `embedforge merge --checkpoints` calls it")
        return data

    @model_validator(mode="after")
    def _one_weight_per_checkpoint(self) -> "MergeConfig":
        if self.weights is not None:
            if self.checkpoints is not None and len(self.weights) != len(self.checkpoints):
                raise ValueError(f"got {len(self.weights)} weights for {len(self.checkpoints)} checkpoints; give one weight per checkpoint")
            if any(not math.isfinite(w) or w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"weights must be finite, >= 0 and not all zero, got {self.weights}")
        return self


def run_merge(config: MergeConfig) -> Path:
    """Merge ``config.checkpoints`` into ``config.output`` and return the output folder.

    Every checkpoint (a folder or packaged model name) and the output are checked before any
    weights load; the merged model is written beside ``output`` and renamed into place, so a
    failure leaves no half-written folder and an old output as it was.
    """
    from embedforge.models.folders import require_model_folder
    from embedforge.models.registry import resolve_model
    from embedforge.outputs import check_output_folder, replacing_folder

    if config.checkpoints is None or config.output is None:
        missing = [name for name in ("checkpoints", "output") if getattr(config, name) is None]
        raise ConfigError(f"{', '.join(missing)}: required to merge (checkpoints: two or more model folders; output: a folder)")
    checkpoints = [require_model_folder(resolve_model(reference)) for reference in config.checkpoints]
    output = Path(config.output)
    if any(output.resolve() == folder.resolve() for folder in checkpoints):
        raise ValueError(f"{output}: is one of the checkpoints; merge into another folder")
    check_output_folder(output, overwrite=config.overwrite)
    with replacing_folder(output) as staging:
        merge_checkpoints(checkpoints, staging, weights=config.weights, method=config.method)
    return output
