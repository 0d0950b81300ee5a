"""Argument types shared by the commands: bad values fail while parsing, before any work."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1, for batch sizes and counts (0 or -1 would silently do nothing useful)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
