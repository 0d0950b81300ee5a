"""Stage references in pipeline configs: ``@out`` and ``@<stage>`` strings.

A pipeline YAML wires stages together by name: ``path: "@mine_labelled"`` reads the output
of the ``mine_labelled`` stage, ``base: "@stage1"`` starts from stage 1's model, and
``"@out"`` is the folder of the stage being configured. References are whole strings, so a
config shows its data flow without any path bookkeeping.
"""

from __future__ import annotations

from typing import Any, Mapping

OWN_FOLDER = "@out"


def find_references(value: Any) -> set[str]:
    """Names of the stages that ``value`` (a config dump) reads from; ``@out`` excluded."""
    if isinstance(value, str):
        return {value[1:]} if value.startswith("@") and value != OWN_FOLDER else set()
    if isinstance(value, Mapping):
        return set().union(*(find_references(item) for item in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(find_references(item) for item in value)) if value else set()
    return set()


def resolve_references(value: Any, outputs: Mapping[str, str], own_folder: str) -> Any:
    """A copy of ``value`` with every reference replaced by a path; unknown names are errors."""
    if isinstance(value, str) and value.startswith("@"):
        if value == OWN_FOLDER:
            return own_folder
        name = value[1:]
        if name not in outputs:
            raise ValueError(f"reference {value!r} names no earlier stage with an output (known: {sorted(outputs)})")
        return outputs[name]
    if isinstance(value, Mapping):
        return {key: resolve_references(item, outputs, own_folder) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_references(item, outputs, own_folder) for item in value]
    return value
