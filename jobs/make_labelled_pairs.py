"""Training rows from the SciFact train-split qrels, with hard negatives mined by a base model.

Run: ``python jobs/make_labelled_pairs.py --output runs/data/scifact_train_pairs.jsonl``
Split: ``embedforge.data.splits.split_ids`` (seed 13, dev fraction 0.2) of the 809 judged
queries; only the train split becomes rows. Negatives: exact search with ``--model`` over
the whole corpus, judged positives excluded, score <= 0.95 x the positive's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.data.beir import load_corpus, load_qrels, load_queries
from embedforge.data.splits import split_ids
from embedforge.models.embedder import Embedder
from embedforge.models.registry import resolve_model
from embedforge.paths import shared_data_dir
from embedforge.training.labelled import labelled_pairs, mine_hard_negatives
from embedforge.training.pairs import write_pair_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--num-negatives", type=int, default=1)
    args = parser.parse_args()

    scifact = shared_data_dir() / "retrieval" / "scifact"
    corpus, queries, qrels = load_corpus(scifact / "corpus.jsonl"), load_queries(scifact / "queries.jsonl"), load_qrels(scifact / "qrels" / "train.tsv")
    train_ids, _ = split_ids(qrels)
    embedder = Embedder.load(resolve_model(args.model))
    doc_ids = list(corpus)
    mined = mine_hard_negatives(
        embedder.encode([queries[q] for q in train_ids], query=True),
        embedder.encode([corpus[d].full_text for d in doc_ids], show_progress=True),
        train_ids,
        doc_ids,
        qrels,
        num_negatives=args.num_negatives,
    )
    rows = labelled_pairs(corpus, queries, qrels, train_ids, negatives=mined)
    print(f"wrote {len(rows)} rows to {write_pair_rows(rows, args.output)}")


if __name__ == "__main__":
    main()
