"""``embedforge encode``: embed a file of texts into a float32 ``.npy`` array."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Embed texts (one per line, or jsonl with a 'text' field) into a float32 .npy file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder, or a packaged model name such as all-MiniLM-L6-v2")
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="the .npy file to write, one row per input text")
    parser.add_argument("--query", action="store_true", help="treat texts as queries (apply the query instruction)")
    parser.add_argument("--instruction", default=None, help="task instruction; implies the query template")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka output size")
    parser.add_argument("--batch-size", type=int, default=32)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from embedforge.data.texts import read_texts
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model

    texts = read_texts(args.input)
    embedder = Embedder.load(resolve_model(args.model))
    embeddings = embedder.encode(
        texts, query=args.query, instruction=args.instruction, dimensions=args.dimensions, batch_size=args.batch_size, show_progress=True
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, embeddings)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}")
    return 0
