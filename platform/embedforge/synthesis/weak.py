"""Weak (query, positive) pairs from the structure of the corpus text, with no LLM, on Ray Data.

Stage 1 of the Qwen3 Embedding recipe trains on a large, unfiltered pool of weak pairs. Without
a generator, the text itself supplies them (``/work/shared/RECIPE.md``, "Weak supervision
without an LLM"). Three kinds, each ``task_type = "weak:<kind>"``:

- ``title``: the document title is the query, the passage text (without title) the positive,
  as E5's (title, passage) pairs.
- ``ict``: the Inverse Cloze Task (Lee et al., 2019). One sentence of the passage is the
  query and the rest of the passage the positive; with probability ``ict_keep_sentence``
  the sentence is left in, so the model also learns lexical matching.
- ``crop``: Contriever's independent cropping (Izacard et al., 2021). Two random word windows
  of the same passage, each of ``crop_min_words..crop_max_words`` words, form a pair.

Each passage has a fixed number of slots (``sum(kinds)``), and each slot becomes a pair or a
rejection with a reason (``title:no_title``, ``ict:one_sentence`` ...), so
``accepted + rejected == attempted``. Every random choice comes from a ``random.Random`` seeded
by ``(seed, passage_id, kind)``: the pairs depend only on the config and the text, not on
how Ray schedules blocks. :func:`weak_pairs` is the pure row function; :func:`run_weak`
reads the corpus, maps it on Ray Data and writes resumable shards like ``synthesize``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

from pydantic import Field, ValidationInfo, field_validator, model_validator

from embedforge.config import ConfigModel, DataPath
from embedforge.session import RayConfig, ensure_ray
from embedforge.synthesis.corpus import CorpusConfig, read_passages
from embedforge.synthesis.ray_data import SYNTHESIS_RAY, RayDataConfig, completed_shards, from_rows
from embedforge.synthesis.report import write_stage_report
from embedforge.synthesis.resume import Shard, check_plan, total_counts, write_shards
from embedforge.synthesis.shards import chunks

KINDS = ("title", "ict", "crop")
"""Pair kinds in the order each passage's slots are made."""


class WeakKinds(ConfigModel):
    """How many pairs of each kind to make per passage (0 turns a kind off)."""

    title: int = Field(1, ge=0, le=1)
    """(title -> passage text) pairs: 0 or 1, since a passage has one title."""
    ict: int = Field(1, ge=0)
    """Inverse Cloze Task pairs: each uses a different sentence of the passage as the query."""
    crop: int = Field(1, ge=0)
    """Contriever pairs: each is two independently cropped word windows of the passage."""

    @model_validator(mode="after")
    def some_kind(self) -> "WeakKinds":
        if not any(getattr(self, kind) for kind in KINDS):
            raise ValueError(f"at least one of {', '.join(KINDS)} must be > 0, or the stage makes no pairs")
        return self


class WeakConfig(ConfigModel):
    """``embedforge weak``: corpus in, weak (query, positive) pairs shards + stats + report out."""

    output_dir: DataPath
    """Folder for ``pairs/``, ``rejected/``, ``done/``, ``manifest.json``, ``stats.json``, ``report.md``."""
    corpus: CorpusConfig
    """The corpus and how it is chunked into passages (the same reader as ``synthesize``)."""
    kinds: WeakKinds = WeakKinds()
    """Pairs of each kind per passage, e.g. ``{title: 1, ict: 1, crop: 0}``."""
    ict_keep_sentence: float = Field(0.1, ge=0.0, le=1.0)
    """Probability that an ICT query sentence is left in its positive (Lee et al. use 0.1)."""
    ict_min_words: int = Field(5, ge=1)
    """Fewest words an ICT query sentence may have; shorter sentences are never queries."""
    crop_min_words: int = Field(10, ge=1)
    """Fewest words in a cropped span; a passage with fewer words yields no crop pair."""
    crop_max_words: int = Field(64, ge=1)
    """Most words in a cropped span (capped by the passage's length)."""
    instruction: str | None = None
    """Query instruction written into every pair; ``None`` leaves queries bare (a training
    dataset's own ``instruction`` can still set one)."""
    seed: int = 0
    """Seeds every random choice, together with the passage id and the kind."""
    shard_size: int = Field(256, ge=1)
    """Passages per output shard: the unit of resumption."""
    ray: RayConfig = SYNTHESIS_RAY
    """How the stage finds Ray (a local one has 4 logical CPUs unless ``ray.num_cpus`` says otherwise)."""
    ray_data: RayDataConfig = RayDataConfig()

    @field_validator("crop_max_words")
    @classmethod
    def crop_bounds(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("crop_min_words")
        if low is not None and value < low:
            raise ValueError(f"crop_max_words ({value}) must be >= crop_min_words ({low})")
        return value


@dataclass(frozen=True)
class WeakRules:
    """The pair-making settings of a :class:`WeakConfig`, as plain values for the row function."""

    kinds: tuple[tuple[str, int], ...] = (("title", 1), ("ict", 1), ("crop", 1))
    ict_keep_sentence: float = 0.1
    ict_min_words: int = 5
    crop_min_words: int = 10
    crop_max_words: int = 64
    instruction: str | None = None
    seed: int = 0
    language: str = "English"


def weak_rules(config: WeakConfig) -> WeakRules:
    return WeakRules(
        kinds=tuple((kind, getattr(config.kinds, kind)) for kind in KINDS),
        ict_keep_sentence=config.ict_keep_sentence,
        ict_min_words=config.ict_min_words,
        crop_min_words=config.crop_min_words,
        crop_max_words=config.crop_max_words,
        instruction=config.instruction,
        seed=config.seed,
        language=config.corpus.language,
    )


ABBREVIATIONS = frozenset(
    "al. e.g. i.e. cf. vs. approx. ca. fig. figs. eq. eqs. ref. refs. tab. no. nos. vol. pp. ed. eds. "
    "dr. mr. mrs. ms. prof. st. jr. sr. inc. ltd. co. corp. dept. univ. "
    "jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec.".split()
)
"""Lower-cased words ending in a period that do not end a sentence (``etc.`` does, so it is
not listed). Dotted initials (``J.``, ``U.S.``, ``e.g.``) are recognised by pattern."""

WESTERN_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
CJK_END = re.compile(r"[。！？]+[」』”’）]*")
INITIALS = re.compile(r"(?:[^\W\d_]\.)+")
OPENERS = "\"'“‘([¿¡「『（"


def is_sentence_end(text: str, end: re.Match) -> bool:
    """A ``.!?`` run followed by whitespace and an upper-case letter or digit, not after an abbreviation."""
    rest = text[end.end() :].lstrip()
    following = rest.lstrip(OPENERS)[:1]
    if not (following.isupper() or following.isdigit()):
        return False
    if "!" in end.group() or "?" in end.group():
        return True
    word = text[: end.start() + 1].split()[-1].lstrip(OPENERS)
    return word.lower() not in ABBREVIATIONS and not INITIALS.fullmatch(word)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the sentences of ``text``, without surrounding whitespace.

    A dependency-free splitter: a sentence ends at ``.``, ``!`` or ``?`` (with any closing
    quotes or brackets) followed by whitespace and an upper-case letter or a digit, except
    after a listed abbreviation (``et al.``, ``Fig.``, ``Dr.`` ...) or dotted initials
    (``J.``, ``U.S.``); it also ends at ``。！？`` whatever follows. Lower-case starts
    ("... 5 mg. and ...") and decimals never split. Scripts without case marks other than
    ``。！？`` (Thai, for example) stay one sentence.
    """
    cuts = [m.end() for m in WESTERN_END.finditer(text) if is_sentence_end(text, m)]
    cuts += [m.end() for m in CJK_END.finditer(text)]
    spans, start = [], 0
    for cut in sorted(set(cuts)) + [len(text)]:
        piece = text[start:cut]
        if piece.strip():
            left = start + len(piece) - len(piece.lstrip())
            spans.append((left, start + len(piece.rstrip())))
        start = cut
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[start:end] for start, end in sentence_spans(text)]


def weak_id(passage_id: str, kind: str, slot: int, seed: int) -> str:
    """A stable 16-hex-digit id for one slot (a pair or its rejection)."""
    return hashlib.sha1(f"weak\x1f{kind}\x1f{passage_id}\x1f{slot}\x1f{seed}".encode()).hexdigest()[:16]


def kind_rng(passage_id: str, kind: str, seed: int) -> random.Random:
    """One generator per (passage, kind): changing one kind's count never changes another's pairs."""
    return random.Random(int(hashlib.sha1(f"{seed}\x1f{passage_id}\x1f{kind}".encode()).hexdigest()[:16], 16))


def with_title(title: str, text: str) -> str:
    """The passage layout of ``corpus.chunk_document``: title, newline, text."""
    return f"{title}\n{text}" if title else text


def title_slots(passage: dict, count: int, rules: WeakRules, rng: random.Random) -> list[tuple[str, str] | str]:
    if not passage["title"].strip():
        return ["no_title"] * count
    return [(passage["title"], passage["text"])] * count


def ict_slots(passage: dict, count: int, rules: WeakRules, rng: random.Random) -> list[tuple[str, str] | str]:
    text = passage["text"]
    spans = sentence_spans(text)
    if len(spans) < 2:
        return ["one_sentence"] * count
    candidates = [span for span in spans if len(text[span[0] : span[1]].split()) >= rules.ict_min_words]
    if not candidates:
        return ["sentences_too_short"] * count
    chosen = rng.sample(candidates, min(count, len(candidates)))
    slots: list[tuple[str, str] | str] = []
    for start, end in chosen:
        keep = rng.random() < rules.ict_keep_sentence
        rest = text if keep else f"{text[:start].rstrip()} {text[end:].lstrip()}".strip()
        slots.append((text[start:end], with_title(passage["title"], rest)))
    return slots + ["too_few_sentences"] * (count - len(chosen))


def crop_slots(passage: dict, count: int, rules: WeakRules, rng: random.Random) -> list[tuple[str, str] | str]:
    text = passage["text"]
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if len(words) < rules.crop_min_words:
        return ["too_short"] * count
    slots: list[tuple[str, str] | str] = []
    for _ in range(count):
        crops = []
        for _side in range(2):
            length = rng.randint(rules.crop_min_words, min(rules.crop_max_words, len(words)))
            first = rng.randint(0, len(words) - length)
            crops.append(text[words[first][0] : words[first + length - 1][1]])
        slots.append(tuple(crops) if crops[0] != crops[1] else "identical_spans")
    return slots


SLOT_MAKERS = {"title": title_slots, "ict": ict_slots, "crop": crop_slots}


def weak_pairs(passage: dict, rules: WeakRules) -> tuple[list[dict], list[dict]]:
    """Pair rows (``PAIR_SCHEMA`` columns) and rejection rows (``REJECT_SCHEMA``) for one passage.

    ``passage`` is a row of ``corpus.read_passages`` (``passage_id``, ``doc_id``, ``title``,
    ``text``). Pure and deterministic: the same passage and rules give the same rows.
    """
    pairs, rejections = [], []
    for kind, count in rules.kinds:
        if count <= 0:
            continue
        made = SLOT_MAKERS[kind](passage, count, rules, kind_rng(passage["passage_id"], kind, rules.seed))
        for slot, outcome in enumerate(made):
            rid = weak_id(passage["passage_id"], kind, slot, rules.seed)
            if isinstance(outcome, str):
                rejections.append(dict(id=rid, passage_id=passage["passage_id"], stage="weak", reason=f"{kind}:{outcome}", query=None, generated_text=""))
                continue
            query, positive = outcome
            pairs.append(
                dict(
                    id=rid,
                    query=query,
                    positive=positive,
                    negatives=[],
                    instruction=rules.instruction,
                    task_type=f"weak:{kind}",
                    language=rules.language,
                    corpus_language=rules.language,
                    source_doc_id=passage["doc_id"],
                    passage_id=passage["passage_id"],
                    positive_ids=[passage["doc_id"]],
                    negative_ids=[],
                    negative_scores=[],
                    engine="weak",
                )
            )
    return pairs, rejections


PASSAGE_COLUMNS = ("passage_id", "doc_id", "title", "text")


def weak_batch(batch: dict, rules: WeakRules) -> dict:
    """Ray Data batch function: one output row per passage, its pairs and rejections as JSON.

    JSON keeps the output schema fixed (two string columns) whatever a block holds: a block
    of passages that all lack titles would otherwise infer different column types.
    """
    out: dict[str, list] = {"passage_id": [], "pairs": [], "rejections": []}
    for i in range(len(batch["passage_id"])):
        passage = {name: str(batch[name][i]) for name in PASSAGE_COLUMNS}
        pairs, rejections = weak_pairs(passage, rules)
        out["passage_id"].append(passage["passage_id"])
        out["pairs"].append(json.dumps(pairs))
        out["rejections"].append(json.dumps(rejections))
    return out


def shard_stats(pairs: list[dict], rejections: list[dict], passages: int) -> dict:
    by_kind = Counter(pair["task_type"].split(":", 1)[1] for pair in pairs)
    reasons = Counter(row["reason"] for row in rejections)
    return {
        "passages": passages,
        "attempted": len(pairs) + len(rejections),
        "accepted": len(pairs),
        "accepted_by_kind": dict(sorted(by_kind.items())),
        "rejected": dict(sorted(reasons.items())),
    }


def weak_shards(pending: dict[int, list[dict]], rules: WeakRules, config: WeakConfig) -> Iterator[Shard]:
    """The pending shards' passages through :func:`weak_batch` on Ray Data, each shard as soon as its last passage is back."""
    ensure_ray(config.ray)
    todo = [{name: p[name] for name in PASSAGE_COLUMNS} for shard in pending.values() for p in shard]
    dataset = from_rows(todo, config.ray_data.rows_per_block).map_batches(weak_batch, fn_kwargs=dict(rules=rules), batch_size=None, batch_format="numpy", num_cpus=config.ray_data.map_num_cpus)
    for index, rows in completed_shards(dataset, pending, key="passage_id"):
        pairs = [pair for r in rows for pair in json.loads(r["pairs"])]
        rejections = [rejection for r in rows for rejection in json.loads(r["rejections"])]
        yield Shard(index, pairs, rejections, shard_stats(pairs, rejections, len(rows)))


def run_weak(config: WeakConfig) -> dict:
    """Make (or resume) the weak pairs of a corpus; returns the stats that ``stats.json`` also holds."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    rules = weak_rules(config)
    passages, corpus_report = read_passages(config.corpus)
    shards = chunks(passages, config.shard_size)
    slots = len(passages) * sum(count for _, count in rules.kinds)
    plan = [(p["passage_id"], p["passage"]) for p in passages]
    check_plan(output_dir, "weak", config, plan, passages=len(passages), records=slots, shards=len(shards))
    make = partial(weak_shards, rules=rules, config=config)
    done = write_shards(output_dir, shards, make, f"weak: {len(passages)} passages ({slots} slots)")

    totals = total_counts(done)
    by_kind, reasons = totals.get("accepted_by_kind", {}), totals.get("rejected", {})
    stats = {
        "stage": "weak",
        "engine": "weak",
        "kinds": dict(rules.kinds),
        "corpus": corpus_report.to_dict(),
        "passages": len(passages),
        "records": slots,
        "shards": len(shards),
        "shards_done": len(done),
        "attempted": totals["attempted"],
        "accepted": totals["accepted"],
        "accepted_by_kind": dict(sorted(by_kind.items())),
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "seconds": round(time.perf_counter() - started, 2),
        "counts": {
            "corpus": corpus_report.counts(),
            "weak": {
                "attempted": totals["attempted"],
                "accepted": totals["accepted"],
                **{f"pairs {kind}": count for kind, count in sorted(by_kind.items())},
                **{f"rejected {reason}": count for reason, count in sorted(reasons.items())},
            },
        },
    }
    return write_stage_report(output_dir, stats, [], "Weak pairs (title, ICT, crop): no teacher scores")
