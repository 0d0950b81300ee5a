"""Deterministic train/dev splits of query ids.

A query lands in dev when a hash of ``"{seed}:{query_id}"`` falls below the dev fraction;
the split depends only on the id and the seed, never on file order or Python's hash seed.
The fixed SciFact split used across the project is ``seed=13, dev_fraction=0.2`` of the
809 queries in ``qrels/train.tsv`` (documented in docs/recipes.md).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

SCIFACT_SPLIT_SEED = 13
SCIFACT_DEV_FRACTION = 0.2


def is_dev(query_id: str, *, seed: int, dev_fraction: float) -> bool:
    digest = hashlib.sha1(f"{seed}:{query_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction


def split_ids(
    query_ids: Iterable[str], *, seed: int = SCIFACT_SPLIT_SEED, dev_fraction: float = SCIFACT_DEV_FRACTION
) -> tuple[list[str], list[str]]:
    """``(train_ids, dev_ids)``, each sorted."""
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    ids = sorted(set(query_ids))
    dev = [query_id for query_id in ids if is_dev(query_id, seed=seed, dev_fraction=dev_fraction)]
    dev_set = set(dev)
    return [query_id for query_id in ids if query_id not in dev_set], dev
