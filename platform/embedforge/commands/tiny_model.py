"""``embedforge tiny-model``: a small random Qwen3 embedder or reranker for tests and demos."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Build a tiny random Qwen3 embedder or reranker with the real Qwen3 tokenizer."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["embedder", "reranker"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model to (missing or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--tokenizer", type=Path, default=None, help="Qwen3 tokenizer folder (default: ../shared/data/tokenizer/qwen3)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from embedforge.outputs import check_output_folder

    check_output_folder(args.out, overwrite=args.overwrite)
    if args.tokenizer is not None and not args.tokenizer.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {args.tokenizer}")

    from embedforge.models.qwen3 import build_embedder, build_reranker
    from embedforge.outputs import replacing_folder

    build = build_embedder if args.kind == "embedder" else build_reranker
    with replacing_folder(args.out) as staging:
        build("tiny", tokenizer_dir=args.tokenizer, seed=args.seed).save(staging)
    print(f"wrote tiny {args.kind} to {args.out}")
    return 0
