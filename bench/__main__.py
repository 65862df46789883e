"""``python -m bench``: the dedup benchmark's command line, one subcommand group per module.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` and gives each of its
subcommands ``set_defaults(handler=fn)``; ``fn(args)`` returns the exit code. A module not written
yet is left out. Expected failures (a missing set, an unreadable lock) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

Handler = Callable[[argparse.Namespace], int]

#: Modules that register subcommands, in the order ``--help`` lists them:
#: datasets (lock, download), run, report, realstore, othertools.
COMMAND_MODULES = ("datasets", "run", "report", "realstore", "othertools")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="The dpip-importer dedup benchmark.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"bench.{name}":
                continue  # a command group not written yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m bench`` with ``argv``; return the exit code."""
    from .datasets import DatasetError

    args = build_parser().parse_args(argv)
    handler = cast(Handler, args.handler)
    try:
        return handler(args)
    except (DatasetError, OSError) as e:
        if args.debug:
            raise
        print(f"bench {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
