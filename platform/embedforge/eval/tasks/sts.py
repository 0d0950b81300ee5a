"""STS Benchmark dev and stsb-multi-mt dev as mteb STS tasks (Spearman on cosine).

File quirks:

- ``sts/stsbenchmark/sts-dev.csv`` is TAB separated despite its name: genre, file, year,
  id, score, sentence1, sentence2, and some rows carry two extra source columns. Sentences
  contain quotes, so a CSV parser corrupts rows; :func:`read_stsbenchmark` splits on tabs
  and reads columns 5-7, ignoring extra columns.
- ``sts/stsb-multi-mt/stsb-XX-dev.csv`` is real CSV (quoted fields): sentence1,
  sentence2, score, one file per language (``en`` is the original, others machine
  translated).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from mteb.abstasks.sts import AbsTaskSTS

from embedforge.eval.sampling import sample_ids
from embedforge.eval.tasks.limits import TaskLimits
from embedforge.eval.tasks.mteb_format import local_metadata, pairs_dataset
from embedforge.paths import shared_data_dir

logger = logging.getLogger(__name__)

STS_INSTRUCTION = "Retrieve semantically similar text."
STSB_MULTI_LANGUAGES = {
    "de": "deu-Latn", "en": "eng-Latn", "es": "spa-Latn", "fr": "fra-Latn", "it": "ita-Latn", "ja": "jpn-Jpan",
    "nl": "nld-Latn", "pl": "pol-Latn", "pt": "por-Latn", "ru": "rus-Cyrl", "zh": "cmn-Hans",
}  # fmt: skip

Pairs = list[tuple[str, str, float]]


def read_stsbenchmark(path: Path) -> Pairs:
    """``(sentence1, sentence2, score)`` rows of an STS Benchmark TAB file."""
    pairs = []
    for line_number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        columns = raw.split("\t")
        if len(columns) < 7:
            raise ValueError(f"{path}:{line_number}: expected at least 7 tab-separated columns, got {len(columns)}")
        pairs.append((columns[5], columns[6], parse_score(columns[4], path, line_number)))
    return pairs


def read_stsb_multi_mt(path: Path) -> Pairs:
    """``(sentence1, sentence2, score)`` rows of an stsb-multi-mt CSV file (no header)."""
    pairs = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 3:
                raise ValueError(f"{path}:{line_number}: expected 3 CSV columns (s1, s2, score), got {len(row)}")
            pairs.append((row[0], row[1], parse_score(row[2], path, line_number)))
    return pairs


def parse_score(text: str, path: Path, line_number: int) -> float:
    try:
        score = float(text)
    except ValueError:
        raise ValueError(f"{path}:{line_number}: score {text!r} is not a number") from None
    if not 0.0 <= score <= 5.0:
        raise ValueError(f"{path}:{line_number}: score {score} is outside 0..5")
    return score


def limited(pairs: Pairs, limits: TaskLimits) -> Pairs:
    keep = set(sample_ids(map(str, range(len(pairs))), limits.max_queries))
    return [pair for index, pair in enumerate(pairs) if str(index) in keep]


def to_dataset(pairs: Pairs):
    return pairs_dataset([pair[0] for pair in pairs], [pair[1] for pair in pairs], [pair[2] for pair in pairs])


class STSBenchmarkDev(AbsTaskSTS):
    metadata = local_metadata(
        "stsb-dev",
        "STS",
        "STS Benchmark dev (1,500 English pairs, scores 0-5), read from the original TAB file.",
        dataset="shared-data/sts/stsbenchmark",
        revision="sts-dev",
        instruction=STS_INSTRUCTION,
        split="dev",
        reference="https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark",
        license="cc-by-sa-4.0",
    )
    min_score = 0
    max_score = 5

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        pairs = limited(read_stsbenchmark(shared_data_dir() / "sts" / "stsbenchmark" / "sts-dev.csv"), self.limits)
        self.dataset = {"default": {"dev": to_dataset(pairs)}}
        self.data_loaded = True


class STSbMultiMTDev(AbsTaskSTS):
    metadata = local_metadata(
        "stsb-multi-mt-dev",
        "STS",
        "STS Benchmark dev machine-translated into 10 languages (plus English): one subset per language.",
        dataset="shared-data/sts/stsb-multi-mt",
        revision="dev",
        instruction=STS_INSTRUCTION,
        split="dev",
        languages={code: [script] for code, script in STSB_MULTI_LANGUAGES.items()},
        reference="https://github.com/PhilipMay/stsb-multi-mt",
        license="cc-by-sa-4.0",
    )
    min_score = 0
    max_score = 5

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()
        if self.limits.languages is not None:
            self.filter_languages(None, hf_subsets=[code for code in self.limits.languages if code in STSB_MULTI_LANGUAGES])

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        folder = shared_data_dir() / "sts" / "stsb-multi-mt"
        self.dataset = {
            code: {"dev": to_dataset(limited(read_stsb_multi_mt(folder / f"stsb-{code}-dev.csv"), self.limits))}
            for code in self.hf_subsets
        }
        self.data_loaded = True
