"""Duplicate queries at scale: exact keys and MinHash/LSH buckets, resolved bucket by bucket.

Every row that passed the per-row rules is hashed into buckets: one for its exact key (the
normalised query) and, when near duplicates are on, ``b`` LSH band buckets of its MinHash
signature (datasketch computes the signatures over word shingles of the normalised query and
picks ``b`` bands of ``r`` values for the Jaccard threshold). Only rows that share a bucket
are compared, so the work grows with the number of rows, not with its square.

The rule, the same whatever the order or blocking of the data: a row is an
``exact_duplicate`` when a row with a smaller id has the same key, else a ``near_duplicate``
when a row with a smaller id shares an LSH bucket with it and their estimated Jaccard (the
share of equal MinHash values, datasketch's estimator) is at least the threshold; that check
removes LSH false positives. So the smallest id of every group of duplicates is kept, and a
row is compared with every smaller row, kept or not. Pairs above the threshold that share no
band are missed with the small probability the banding allows (datasketch's optimum for equal
false-positive and false-negative weights).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

BUCKET_SCHEMA = pa.schema(
    [
        pa.field("bucket", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("key", pa.string()),
        pa.field("signature", pa.binary()),
    ]
)
"""One row per (row, bucket): ``key`` is set in the exact bucket, ``signature`` in LSH buckets."""

DUPLICATE_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("duplicate", pa.string())])

MINHASH_SEED = 1
"""Fixed, so signatures (and so the result) are the same in every run and on every worker."""


@dataclass(frozen=True)
class Banding:
    """MinHash size and LSH banding for one Jaccard threshold."""

    threshold: float
    num_perm: int
    shingle_words: int
    bands: int
    rows: int

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int, shingle_words: int) -> "Banding":
        """datasketch's band count ``b`` and band width ``r`` for this threshold and signature size."""
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        return cls(threshold, num_perm, shingle_words, lsh.b, lsh.r)


def shingles(key: str, words: int) -> list[bytes]:
    """The word ``words``-grams of a normalised query (the whole query if it is shorter)."""
    tokens = key.split()
    if len(tokens) <= words:
        return [key.encode()] if key else []
    return [" ".join(tokens[i : i + words]).encode() for i in range(len(tokens) - words + 1)]


class Signer:
    """MinHash signatures (uint32, ``num_perm``) of normalised queries; permutations made once."""

    def __init__(self, banding: Banding):
        from datasketch import MinHash

        self.banding = banding
        template = MinHash(num_perm=banding.num_perm, seed=MINHASH_SEED)
        self.permutations, self.scheme = template.permutations, template.scheme

    def signature(self, key: str) -> np.ndarray:
        from datasketch import MinHash

        minhash = MinHash(num_perm=self.banding.num_perm, seed=MINHASH_SEED, permutations=self.permutations, scheme=self.scheme)
        minhash.update_batch(shingles(key, self.banding.shingle_words))
        return minhash.hashvalues


def bucket_id(kind: bytes, payload: bytes) -> int:
    """A signed 64-bit bucket id; ``kind`` separates the exact bucket from each band."""
    return int.from_bytes(hashlib.blake2b(kind + b"\0" + payload, digest_size=8).digest(), "little", signed=True)


def band_buckets(signature: np.ndarray, banding: Banding) -> list[int]:
    """The ``b`` LSH bucket ids of one signature (band ``i`` hashes values ``i*r .. (i+1)*r``)."""
    return [bucket_id(b"band%d" % i, signature[i * banding.rows : (i + 1) * banding.rows].tobytes()) for i in range(banding.bands)]


def bucket_rows(ids: list[str], keys: list[str], signatures: list[bytes | None], banding: Banding | None) -> pa.Table:
    """The exact bucket of every row, plus its LSH buckets when it has a signature."""
    columns: dict[str, list] = {"bucket": [], "id": [], "key": [], "signature": []}
    for row_id, key, signature in zip(ids, keys, signatures):
        columns["bucket"].append(bucket_id(b"exact", key.encode()))
        columns["id"].append(row_id)
        columns["key"].append(key)
        columns["signature"].append(None)
        if signature is not None and banding is not None:
            for bucket in band_buckets(np.frombuffer(signature, dtype=np.uint32), banding):
                columns["bucket"].append(bucket)
                columns["id"].append(row_id)
                columns["key"].append(None)
                columns["signature"].append(signature)
    return pa.table(columns, schema=BUCKET_SCHEMA)


def estimated_jaccard(signatures: np.ndarray, signature: np.ndarray) -> np.ndarray:
    """The share of equal MinHash values of each row of ``signatures`` (K, P) with one (P,): (K,)."""
    return (signatures == signature).mean(axis=1)


def resolve_buckets(table: pa.Table, threshold: float | None) -> pa.Table:
    """``(id, duplicate)`` for every row that a smaller id makes a duplicate, over whole buckets.

    ``table`` must hold every row of each bucket it holds (any order). A row may appear once
    per bucket that convicts it; the caller keeps ``exact_duplicate`` over ``near_duplicate``.
    """
    table = table.sort_by([("bucket", "ascending"), ("id", "ascending")])
    buckets = table["bucket"].to_numpy()
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], len(buckets)]
    shared = ends - starts >= 2  # most buckets hold one row: skip them without a Python loop
    found_ids, found_reasons = [], []
    for start, end in zip(starts[shared].tolist(), ends[shared].tolist()):
        ids = table["id"].slice(start, end - start).to_pylist()
        keys = table["key"].slice(start, end - start).to_pylist()
        if keys[0] is not None:  # the exact bucket: the same key, barring a 64-bit hash collision
            seen: set[str] = set()
            for row_id, key in zip(ids, keys):
                if key in seen:
                    found_ids.append(row_id)
                    found_reasons.append("exact_duplicate")
                seen.add(key)
            continue
        if threshold is None:
            continue
        signatures = table["signature"].slice(start, end - start).to_pylist()
        first: dict[bytes, int] = {}  # each distinct signature -> its first (smallest id) position
        for index, signature in enumerate(signatures):
            first.setdefault(signature, index)
        rank = {signature: k for k, signature in enumerate(first)}
        matrix = np.stack([np.frombuffer(s, dtype=np.uint32) for s in first])  # (K distinct, P), in id order
        for index, signature in enumerate(signatures):
            k = rank[signature]
            if first[signature] < index:  # the same signature as a smaller id: estimated Jaccard 1
                duplicate = True
            else:
                duplicate = k > 0 and float(estimated_jaccard(matrix[:k], matrix[k]).max()) >= threshold
            if duplicate:
                found_ids.append(ids[index])
                found_reasons.append("near_duplicate")
    return pa.table({"id": found_ids, "duplicate": found_reasons}, schema=DUPLICATE_SCHEMA)
