"""The ``embedforge`` command line: a dictionary from command names to their modules.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
and imports heavy libraries inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "tiny-model": "embedforge.commands.tiny_model",
    "encode": "embedforge.commands.encode",
    "score": "embedforge.commands.score",
    "merge": "embedforge.commands.merge",
    "synthesize": "embedforge.commands.synthesize",
    "weak": "embedforge.commands.weak",
    "filter": "embedforge.commands.filter",
    "mine": "embedforge.commands.mine",
    "serve": "embedforge.commands.serve",
    "train": "embedforge.commands.train",
    "run": "embedforge.commands.run",
    "evaluate": "embedforge.commands.evaluate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedforge", description="Corpus to embedding and reranking models and endpoints, on Ray.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError) as error:
        print(f"embedforge {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
