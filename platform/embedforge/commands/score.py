"""``embedforge score``: reranker relevance scores for one query against a file of documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Score documents against a query with a reranker; writes a JSON list in input order."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="reranker folder")
    parser.add_argument("--query", required=True)
    parser.add_argument("--input", type=Path, required=True, help="documents, one per line or jsonl with 'text'")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--instruction", default=None)
    parser.add_argument("--batch-size", type=int, default=16)


def run(args: argparse.Namespace) -> int:
    from embedforge.data.texts import read_texts
    from embedforge.models.registry import resolve_model
    from embedforge.models.reranker import load_reranker

    documents = read_texts(args.input)
    reranker = load_reranker(resolve_model(args.model))
    scores = reranker.score(args.query, documents, instruction=args.instruction, batch_size=args.batch_size)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([float(score) for score in scores]) + "\n")
    print(f"wrote {len(scores)} scores to {args.output}")
    return 0
