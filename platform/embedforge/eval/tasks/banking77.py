"""banking77 intent classification (77 labels) as an mteb classification task.

Files: ``classification/banking77/{train,test}.csv`` with a header ``text,category``
(real CSV, quoted fields). mteb trains a logistic regression on 8 embedded training texts
per label (``classification_samples_per_label``), ``classification_experiments`` times (10),
and reports accuracy on the test texts.
"""

from __future__ import annotations

import csv
from pathlib import Path

from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification

from embedforge.eval.sampling import sample_ids
from embedforge.eval.tasks.limits import TaskLimits
from embedforge.eval.tasks.mteb_format import local_metadata
from embedforge.paths import shared_data_dir

BANKING77_INSTRUCTION = "Given an online banking query, find the corresponding intents"


def read_labelled_csv(path: Path) -> list[tuple[str, str]]:
    """``(text, category)`` rows of a CSV with header ``text,category``."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header != ["text", "category"]:
            raise ValueError(f"{path}:1: expected the header 'text,category', got {header}")
        examples = []
        for line_number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}:{line_number}: expected a non-empty text and category, got {row}")
            examples.append((row[0], row[1]))
    return examples


def to_dataset(examples: list[tuple[str, str]]) -> Dataset:
    return Dataset.from_dict({"text": [text for text, _ in examples], "label": [label for _, label in examples]})


class Banking77(AbsTaskClassification):
    metadata = local_metadata(
        "banking77",
        "Classification",
        "77 fine-grained banking intents; 10,003 training and 3,080 test queries.",
        dataset="shared-data/classification/banking77",
        revision="polyai",
        instruction=BANKING77_INSTRUCTION,
        reference="https://arxiv.org/abs/2003.04807",
        license="cc-by-4.0",
    )

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()
        self.n_experiments = self.limits.classification_experiments
        self.samples_per_label = self.limits.classification_samples_per_label

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        folder = shared_data_dir() / "classification" / "banking77"
        test = read_labelled_csv(folder / "test.csv")
        keep = set(sample_ids(map(str, range(len(test))), self.limits.max_queries))
        test = [example for index, example in enumerate(test) if str(index) in keep]
        train = read_labelled_csv(folder / "train.csv")
        self.dataset = {"default": DatasetDict({"train": to_dataset(train), "test": to_dataset(test)})}
        self.data_loaded = True
