"""``embedforge encode``: embed a file of texts into a float32 ``.npy`` array."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.commands.arguments import positive_int

HELP = "Embed texts (one per line, or JSON lines / a JSON array with a 'text' field) into a float32 .npy file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder, or a packaged model name such as all-MiniLM-L6-v2")
    parser.add_argument("--input", type=Path, required=True, help="texts: one per line; .jsonl/.ndjson/.json: records with 'text'")
    parser.add_argument("--output", type=Path, required=True, help="the .npy file to write, one row per input text")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--query", action="store_true", help="treat texts as queries (apply the query instruction)")
    parser.add_argument("--instruction", default=None, help="task instruction; implies the query template")
    parser.add_argument("--dimensions", type=positive_int, default=None, help="Matryoshka output size")
    parser.add_argument("--batch-size", type=positive_int, default=32)


def run(args: argparse.Namespace) -> int:
    from embedforge.data.texts import read_texts
    from embedforge.models.folders import require_kind
    from embedforge.models.registry import resolve_model
    from embedforge.outputs import check_output_file

    # np.save appends .npy to any other name; check and write the file it really writes.
    output = args.output if args.output.name.endswith(".npy") or args.output.is_dir() else args.output.with_name(args.output.name + ".npy")
    check_output_file(output, overwrite=args.overwrite)
    texts = read_texts(args.input)
    folder = require_kind(resolve_model(args.model), "embedder")

    import numpy as np

    from embedforge.models.embedder import Embedder
    from embedforge.outputs import replacing_file

    embedder = Embedder.load(folder)
    embeddings = embedder.encode(
        texts, query=args.query, instruction=args.instruction, dimensions=args.dimensions, batch_size=args.batch_size, show_progress=True
    )
    with replacing_file(output) as staging, staging.open("wb") as handle:
        np.save(handle, embeddings)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {output}")
    return 0
