"""Hard-negative mining: teacher-embed the corpus, index it with faiss, pick negatives.

For each pair the query's top-k passages are retrieved; passages of any positive document
are excluded; a candidate must score below ``max_score_ratio`` x the positive's score
(false-negative guard, 0.95 by default); then ``num_negatives`` are sampled from what is
left with a per-pair seeded RNG. Exact search (``IndexFlatIP``) for small corpora, IVF for
large ones. Works on synthetic pairs folders and on labelled BEIR qrels alike.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
from pydantic import model_validator

from embedforge.config import ConfigModel, DataPath
from embedforge.session import RayConfig, ensure_ray
from embedforge.synthesis.corpus import CorpusConfig, read_passages
from embedforge.synthesis.labelled import LabelledPairsConfig, labelled_pairs
from embedforge.synthesis.ray_data import SYNTHESIS_RAY
from embedforge.synthesis.report import write_stage_report
from embedforge.synthesis.resume import Shard, check_plan, total_counts, write_shards
from embedforge.synthesis.shards import chunks, read_pairs
from embedforge.synthesis.teacher import TeacherConfig, TextEmbedder, actor_options, cosine_rows, teacher_identity, teacher_policy


class IndexConfig(ConfigModel):
    """The faiss index over the corpus vectors."""

    kind: Literal["auto", "flat", "ivf"] = "auto"
    """``auto``: exact below ``ivf_min_passages`` passages, IVF from there on."""
    ivf_min_passages: int = 50_000
    ivf_lists: int | None = None
    """IVF cells; ``None`` is 4 x sqrt(passages)."""
    ivf_probe: int = 16
    """Cells visited per query (recall against speed)."""


class MineConfig(ConfigModel):
    """``embedforge mine``: pairs (a folder, or labelled qrels) plus a corpus, out pairs with negatives."""

    output_dir: DataPath
    corpus: CorpusConfig
    pairs_dir: DataPath | None = None
    """A pairs folder from ``synthesize`` or ``filter``."""
    labelled: LabelledPairsConfig | None = None
    """Or labelled BEIR queries and qrels."""
    teacher: TeacherConfig = TeacherConfig()
    index: IndexConfig = IndexConfig()
    top_k: int = 50
    num_negatives: int = 7
    max_score_ratio: float = 0.95
    """A negative must score below this times the positive's score."""
    seed: int = 0
    shard_size: int = 256
    ray: RayConfig = SYNTHESIS_RAY
    """How the stage finds Ray (a local one has 4 logical CPUs unless ``ray.num_cpus`` says otherwise)."""

    @model_validator(mode="after")
    def one_input(self) -> "MineConfig":
        if (self.pairs_dir is None) == (self.labelled is None):
            raise ValueError("give exactly one of pairs_dir and labelled")
        return self


def index_kind(count: int, config: IndexConfig) -> Literal["flat", "ivf"]:
    """The index ``config`` gives a corpus of ``count`` passages (``auto`` resolved)."""
    if config.kind != "auto":
        return config.kind
    return "ivf" if count >= config.ivf_min_passages else "flat"


def build_index(vectors: np.ndarray, config: IndexConfig):
    """A faiss inner-product index over normalised (N, D) vectors."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if index_kind(count, config) == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        lists = config.ivf_lists or max(1, int(4 * np.sqrt(count)))
        lists = min(lists, count)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(config.ivf_probe, lists)
    index.add(vectors)
    return index


def select_negatives(
    candidates: Sequence[tuple[int, float]],
    passage_docs: Sequence[str],
    positive_ids: Sequence[str],
    positive_score: float,
    *,
    max_score_ratio: float,
    count: int,
    rng: random.Random,
) -> tuple[list[tuple[int, float]], Counter]:
    """Sample up to ``count`` negatives from ``(passage_index, score)`` candidates, best first.

    Drops candidates from positive documents and those scoring at or above
    ``max_score_ratio * positive_score``; returns the chosen ones (in score order) and the
    number of candidates dropped per reason.
    """
    positives, dropped, allowed = set(positive_ids), Counter(), []
    limit = max_score_ratio * positive_score
    for index, score in candidates:
        if index < 0:
            continue
        if passage_docs[index] in positives:
            dropped["positive"] += 1
        elif score >= limit:
            dropped["above_guard"] += 1
        else:
            allowed.append((index, score))
    chosen = sorted(rng.sample(range(len(allowed)), min(count, len(allowed))))
    return [allowed[i] for i in chosen], dropped


def embed_texts(texts: Sequence[str], instructions: Sequence[str | None], config: MineConfig) -> np.ndarray:
    """Vectors (N, D), in input order, from one pass of one teacher actor pool.

    Each text is encoded with its instruction in the query template (``None``: bare). Texts
    go in longest first, in blocks of whole encode batches, so every batch pads to about its
    own length, as sentence-transformers' ``encode`` sorts within one process; rows travel
    as Arrow columns and vectors come back as one tensor column, with no per-row Python.
    """
    import pyarrow as pa
    import ray

    order = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
    table = pa.table({"row": pa.array(order), "text": pa.array(texts, pa.string()).take(order), "instruction": pa.array(instructions, pa.string()).take(order)})
    batch = config.teacher.batch_size
    block = batch * max(1, min(16, -(-len(texts) // (4 * batch * config.teacher.concurrency))))  # whole batches; 4+ blocks per actor
    dataset = ray.data.from_arrow([table.slice(offset, block) for offset in range(0, len(texts), block)])
    dataset = dataset.map_batches(
        TextEmbedder,
        fn_constructor_kwargs=dict(model=config.teacher.model, batch_size=batch, column="text", instruction_column="instruction"),
        **actor_options(config.teacher, batch_format="numpy", batch_size=block),
    )
    vectors = None
    for output in dataset.iter_batches(batch_format="numpy", batch_size=None):
        embeddings = np.asarray(output["embedding"], dtype=np.float32)
        vectors = np.zeros((len(texts), embeddings.shape[1]), dtype=np.float32) if vectors is None else vectors
        vectors[output["row"]] = embeddings
    return vectors


class PairTexts:
    """The distinct (text, instruction) pairs to encode, the corpus passages first, in passage order."""

    def __init__(self, passages: Sequence[str]):
        self.texts, self.instructions = list(passages), [None] * len(passages)
        self.position: dict[tuple[str, str | None], int] = {}
        for index, passage in enumerate(passages):
            self.position.setdefault((passage, None), index)

    def add(self, text: str, instruction: str | None) -> int:
        """The position of ``text`` with ``instruction``, added if new."""
        key = (text, instruction)
        if key not in self.position:
            self.position[key] = len(self.texts)
            self.texts.append(text)
            self.instructions.append(instruction)
        return self.position[key]


def corpus_cache(passages: list[dict], config: MineConfig, output_dir: Path) -> Path:
    """Where the corpus vectors are kept, so a resumed job does not re-embed the corpus."""
    key = hashlib.sha1(("\n".join(p["passage_id"] for p in passages) + config.teacher.model).encode()).hexdigest()[:16]
    return output_dir / f"corpus_vectors-{key}.npy"


def embed_corpus_and_pairs(passages: list[dict], rows: list[dict], config: MineConfig, output_dir: Path) -> tuple[np.ndarray, list[dict], np.ndarray, np.ndarray]:
    """Corpus vectors, scored rows, query vectors and guard scores, from one teacher pass.

    The corpus (unless cached), every distinct query and every positive that is not already
    a corpus passage are encoded together (:func:`embed_texts`), each with the instruction
    the teacher's policy gives it. Rows get this teacher's ``teacher_score``, cos(query,
    positive) with the policy's instructions, and ``teacher_model``; the guard scores (N,)
    are cos(query, positive encoded as a bare document), the kind of score the search over
    the bare corpus vectors gives every candidate. Rows without a query get NaN, no teacher
    and a zero query vector.
    """
    policy = teacher_policy(config.teacher)
    identity = teacher_identity(config.teacher.model, policy)
    cache = corpus_cache(passages, config, output_dir)
    texts = PairTexts([p["passage"] for p in passages])
    no_text = -1
    query_at, document_at, positive_at = (np.full(len(rows), no_text) for _ in range(3))
    for i, row in enumerate(rows):
        if not (isinstance(row.get("query"), str) and row["query"]):
            continue
        query_side, positive_side = policy.for_row(row.get("instruction"), row.get("task_type"))
        query_at[i] = texts.add(row["query"], query_side)
        document_at[i] = texts.add(row["positive"], None)
        positive_at[i] = texts.add(row["positive"], positive_side)
    known = len(passages) if cache.exists() else 0
    vectors = np.load(cache) if known else None
    if len(texts.texts) > known:
        new = embed_texts(texts.texts[known:], texts.instructions[known:], config)
        vectors = new if vectors is None else np.concatenate([vectors, new])
    if not known:
        output_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache.with_suffix(".tmp.npy"), vectors[: len(passages)])
        cache.with_suffix(".tmp.npy").replace(cache)
    scored_rows = query_at != no_text
    queries = np.zeros((len(rows), vectors.shape[1]), dtype=np.float32)
    queries[scored_rows] = vectors[query_at[scored_rows]]
    scores, guard = np.full(len(rows), np.nan, dtype=np.float32), np.full(len(rows), np.nan, dtype=np.float32)
    scores[scored_rows] = cosine_rows(queries[scored_rows], vectors[positive_at[scored_rows]])
    guard[scored_rows] = cosine_rows(queries[scored_rows], vectors[document_at[scored_rows]])
    scored = [dict(row, teacher_score=float(score), teacher_model=identity if ok else None) for row, score, ok in zip(rows, scores, scored_rows)]
    return vectors[: len(passages)], scored, queries, guard


def mine_rows(rows: list[dict], query_vectors: np.ndarray, positive_scores: np.ndarray, index, passages: list[dict], config: MineConfig) -> tuple[list[dict], Counter]:
    """Attach negatives to each row; returns the rows and drop counts per reason.

    ``positive_scores`` are what the guard compares candidates against: cos(query, positive)
    in the same space as the corpus search (see :func:`embed_pairs`).
    """
    extra = max(len(r.get("positive_ids") or []) for r in rows) + 8
    scores, ids = index.search(np.ascontiguousarray(query_vectors), min(config.top_k + extra, index.ntotal))  # (N, k)
    docs = [p["doc_id"] for p in passages]
    totals: Counter = Counter()
    mined = []
    for i, row in enumerate(rows):
        positives = list(row.get("positive_ids") or []) or [row["source_doc_id"]]
        ranked = [(int(j), float(s)) for j, s in zip(ids[i], scores[i]) if j >= 0]
        candidates = [c for c in ranked if docs[c[0]] in positives] + [c for c in ranked if docs[c[0]] not in positives][: config.top_k]
        rng = random.Random(f"{row['id']}|{config.seed}")
        chosen, dropped = select_negatives(
            candidates, docs, positives, float(positive_scores[i]), max_score_ratio=config.max_score_ratio, count=config.num_negatives, rng=rng
        )
        totals.update(dropped)
        totals["negatives"] += len(chosen)
        totals["pairs_short_of_negatives"] += int(len(chosen) < config.num_negatives)
        mined.append(
            dict(
                row,
                positive_ids=positives,
                negatives=[passages[j]["passage"] for j, _ in chosen],
                negative_ids=[passages[j]["passage_id"] for j, _ in chosen],
                negative_scores=[s for _, s in chosen],
            )
        )
    return mined, totals


def mined_shards(pending: dict[int, list[dict]], passages: list[dict], config: MineConfig, output_dir: Path) -> Iterator[Shard]:
    """The pending shards' pairs with negatives, from one teacher pass over all of them."""
    todo = [row for shard in pending.values() for row in shard]
    if not todo:  # an empty input: its one empty shard marks the run done
        yield from (Shard(index, [], [], {"pairs": 0}) for index in pending)
        return
    ensure_ray(config.ray)
    corpus, scored, vectors, guard_scores = embed_corpus_and_pairs(passages, todo, config, output_dir)
    index = build_index(corpus, config.index)
    start = 0
    for i, shard in pending.items():
        end = start + len(shard)
        mined, counts = mine_rows(scored[start:end], vectors[start:end], guard_scores[start:end], index, passages, config)
        yield Shard(i, mined, [], dict(counts, pairs=len(mined)))
        start = end


def run_mine(config: MineConfig) -> dict:
    """Mine hard negatives for every pair (resumable: finished shards are skipped)."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    passages, corpus_report = read_passages(config.corpus)
    source: dict = {}
    if config.labelled is not None:
        rows, source = labelled_pairs(config.labelled, passages)
    else:
        rows = read_pairs(config.pairs_dir).to_pylist()
    rows.sort(key=lambda row: row["id"])
    shards = chunks(rows, config.shard_size) or [[]]
    check_plan(output_dir, "mine", config, [r["id"] for r in rows], records=len(rows), shards=len(shards))
    make = partial(mined_shards, passages=passages, config=config, output_dir=output_dir)
    totals = total_counts(write_shards(output_dir, shards, make, f"mine: {len(rows)} pairs, {len(passages)} passages"))
    mined_table = read_pairs(output_dir)
    negatives_per_pair = [len(n) for n in mined_table.column("negatives").to_pylist()]
    stats = {
        "stage": "mine",
        "pairs": len(rows),
        "passages": len(passages),
        "labelled": source,
        "corpus": corpus_report.to_dict(),
        "negatives_per_pair": Counter(negatives_per_pair),
        "candidates": dict(sorted(totals.items())),
        "settings": {"top_k": config.top_k, "num_negatives": config.num_negatives, "max_score_ratio": config.max_score_ratio, "index": index_kind(len(passages), config.index)},
        "seconds": round(time.perf_counter() - started, 2),
        "counts": {
            "corpus": corpus_report.counts(),
            "mine": {"pairs": len(rows), "negatives": sum(negatives_per_pair), **{f"candidates dropped: {k}": v for k, v in totals.items() if k in ("positive", "above_guard")}},
        },
    }
    stats["negatives_per_pair"] = {str(k): v for k, v in sorted(stats["negatives_per_pair"].items())}
    return write_stage_report(output_dir, stats, mined_table.column("teacher_score").to_pylist(), "Mining: teacher cosine of positives")

