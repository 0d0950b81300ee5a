"""The ``embedforge`` command line: a dictionary from command names to their modules.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
and imports heavy libraries inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from embedforge import __version__

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


class Parser(argparse.ArgumentParser):
    """Argument mistakes are one line, ``embedforge CMD: error: ...``, exit code 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="embedforge", description="Corpus to embedding and reranking models and endpoints, on Ray.")
    parser.add_argument("--version", action="version", version=f"embedforge {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def error_lines(error: BaseException) -> list[str]:
    """A user mistake as lines of text: one per pydantic problem, else the message's lines."""
    from pydantic import ValidationError

    from embedforge.config import format_validation_error

    if isinstance(error, ValidationError):
        return format_validation_error(error, error.title).splitlines()
    return [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]


def quiet_accelerator_probe() -> None:
    """Name DeepSpeed's accelerator on machines without CUDA, before anything imports DeepSpeed.

    Otherwise DeepSpeed probes at import and prints "Setting accelerator to CPU" through a
    logger bound to stdout, which mixes a warning into a command's output. With CUDA, or when
    the user set ``DS_ACCELERATOR``, DeepSpeed decides as usual.
    """
    import os

    if "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"


def main(argv: list[str] | None = None) -> int:
    """Run one command. User mistakes (bad values, missing or unwritable files: ``ValueError``,
    which includes pydantic's ``ValidationError`` and ``ConfigError``, and ``OSError``) are one
    line each and exit code 2; anything else is a bug, shown with its traceback, exit code 1."""
    args = build_parser().parse_args(argv)
    quiet_accelerator_probe()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"embedforge {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as error:
        for line in error_lines(error):
            print(f"embedforge {args.command}: error: {line}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print(f"embedforge {args.command}: internal error: this is a bug in embedforge; please report it with the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
