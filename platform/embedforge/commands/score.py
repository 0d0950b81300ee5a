"""``embedforge score``: reranker relevance scores for one query against a file of documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embedforge.commands.arguments import positive_int

HELP = "Score documents against a query with a reranker; writes a JSON list in input order."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="reranker folder")
    parser.add_argument("--query", required=True)
    parser.add_argument("--input", type=Path, required=True, help="documents: one per line; .jsonl/.ndjson/.json: records with 'text'")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--instruction", default=None)
    parser.add_argument("--batch-size", type=positive_int, default=16)


def run(args: argparse.Namespace) -> int:
    from embedforge.data.texts import read_texts
    from embedforge.models.folders import require_kind
    from embedforge.models.registry import resolve_model
    from embedforge.outputs import check_output_file

    check_output_file(args.output, overwrite=args.overwrite)
    documents = read_texts(args.input)
    folder = require_kind(resolve_model(args.model), "reranker")

    from tqdm import tqdm

    from embedforge.models.reranker import load_reranker
    from embedforge.outputs import replacing_file

    reranker = load_reranker(folder)
    scores = []
    with tqdm(total=len(documents), desc="scoring", unit="doc", disable=len(documents) <= args.batch_size) as progress:
        for start in range(0, len(documents), args.batch_size):
            batch = documents[start : start + args.batch_size]
            scores.extend(float(score) for score in reranker.score(args.query, batch, instruction=args.instruction, batch_size=args.batch_size))
            progress.update(len(batch))
    with replacing_file(args.output) as staging:
        staging.write_text(json.dumps(scores) + "\n")
    print(f"wrote {len(scores)} scores to {args.output}")
    return 0
