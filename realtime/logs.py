"""The one logging set-up of every command (main run, sub-commands, ``python -m`` tools, bench scripts).

Logs and errors go to stderr, results to stdout (as Unix tools do). ``-v`` shows INFO, ``-vv`` DEBUG with the
logger name and tracebacks; the default shows warnings and errors only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def level_of(verbose: int) -> int:
    return logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG


def setup_logging(verbose: int = 0) -> None:
    """Route every logger to stderr at the level ``-v`` asks for (replaces handlers set before)."""
    level = level_of(verbose)
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=verbose > 1,
                                               rich_tracebacks=verbose > 1, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # a pipe or a log file: one plain line per record, never wrapped
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(levelname)s %(name)s: %(message)s" if verbose > 1 else "%(levelname)s %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` (repeatable) on ``parser``, unless it has one already."""
    if any("-v" in action.option_strings for action in parser._actions):
        return
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-v info, -vv debug)")


def count_verbose(argv: Sequence[str]) -> int:
    """The ``-v`` level in a raw argument list (before parsing, so that parsing itself can log)."""
    n = 0
    for arg in argv:
        if arg == "--":
            break
        if arg == "--verbose":
            n += 1
        elif arg.startswith("-v") and set(arg[1:]) == {"v"}:
            n += len(arg) - 1
    return n


__all__ = ["add_verbose_argument", "count_verbose", "level_of", "setup_logging"]
