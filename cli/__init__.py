"""The command line: one module per command group, each with `register(subparsers)`;
`main.py` only dispatches to them (docs/architecture.md). Shared here: bounded argument types
(argparse refuses a value out of range with the range, before it sizes anything)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

MAX_THREADS = 1024


def whole_number(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type for an integer in lo..hi (a huge value would size an allocation)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = lo - 1
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be a whole number within {lo}..{hi}, "
                                             f"got {text!r}")
        return n

    parse.__name__ = f"whole number {lo}..{hi}"
    return parse
