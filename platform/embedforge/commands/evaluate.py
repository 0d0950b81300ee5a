"""``embedforge evaluate``: a model (and optionally a reranker) on offline or mteb tasks."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.commands.arguments import positive_int

HELP = "Evaluate an embedder (and optionally a reranker on its top 100) on offline or mteb tasks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="embedder folder, or a packaged model name such as all-MiniLM-L6-v2")
    parser.add_argument(
        "--tasks",
        default="scifact-dev",
        help="comma-separated: scifact-dev, cranfield, stsb-dev, stsb-multi-mt-dev, banking77, xquad, xquad-crosslingual, or mteb task names (need the hub)",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for results.json, results.md and main_scores.png")
    parser.add_argument("--reranker", default=None, help="reranker folder: adds '<task>+reranker' scores for retrieval tasks")
    parser.add_argument("--max-queries", type=positive_int, default=None, help="queries / pairs / test texts per task subset (deterministic subset)")
    parser.add_argument("--max-corpus-docs", type=positive_int, default=None, help="retrieval corpus size: judged documents first, then others")
    parser.add_argument("--languages", default=None, help="comma-separated language codes for multilingual tasks, e.g. en,de")
    parser.add_argument("--classification-experiments", type=positive_int, default=10, help="logistic-regression runs (mteb: 10)")
    parser.add_argument("--classification-samples-per-label", type=positive_int, default=8, help="training texts per label (mteb: 8)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--rerank-top-k", type=positive_int, default=100)
    parser.add_argument("--dimensions", type=positive_int, default=None, help="Matryoshka output size")
    parser.add_argument(
        "--instructions", choices=["auto", "on", "off"], default="auto", help="task instructions (auto: if the model has a default one)"
    )
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from embedforge.config import ConfigError
    from embedforge.eval.runner import run_evaluate
    from embedforge.eval.settings import EvaluateConfig
    from embedforge.eval.tasks import TaskLimits, check_task_names
    from embedforge.models.folders import require_kind
    from embedforge.models.registry import resolve_model
    from embedforge.outputs import check_writable

    settings = EvaluateConfig(
        tasks=[name.strip() for name in args.tasks.split(",") if name.strip()],
        limits=TaskLimits(
            max_queries=args.max_queries,
            max_corpus_docs=args.max_corpus_docs,
            languages=args.languages.split(",") if args.languages else None,
            classification_experiments=args.classification_experiments,
            classification_samples_per_label=args.classification_samples_per_label,
        ),
        batch_size=args.batch_size,
        rerank_top_k=args.rerank_top_k,
        dimensions=args.dimensions,
        use_instructions={"auto": "auto", "on": True, "off": False}[args.instructions],
    )
    problems = [f"--tasks: {problem}" for problem in check_task_names(settings.tasks)]
    for flag, reference, kind in (("--model", args.model, "embedder"), ("--reranker", args.reranker, "reranker")):
        if reference is not None:
            try:
                require_kind(resolve_model(reference), kind)
            except (OSError, ValueError) as error:
                problems.append(f"{flag}: {error}")
    if args.output.exists() and not args.output.is_dir():
        problems.append(f"--output: {args.output} is a file; give a folder for results.json and the report")
    if problems:
        raise ConfigError("\n".join(problems))
    check_writable(args.output)
    runs = run_evaluate(args.model, args.output, settings, reranker=args.reranker, device=args.device, show_progress=True)
    entries = sum(len(by_task) for by_task in runs.values())
    print((args.output / "results.md").read_text())
    print(f"wrote {args.output / 'results.json'} ({entries} task entries) and {args.output / 'main_scores.png'}")
    return 0
