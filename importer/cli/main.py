"""Entry point of ``dpip-import``: builds the parser from the command modules and dispatches.

Each command module exposes ``register(subparsers)``, which adds its subcommands with
``set_defaults(handler=fn)``; a handler takes the parsed namespace and returns the exit code.
Every :class:`ImporterError` becomes one line on stderr and exit code 1 (traceback only with
``--debug``); a broken pipe or Ctrl-C exits quietly. SIGTERM and SIGHUP are turned into an
exception for the command's duration, as Ctrl-C is, so a killed ``fetch``, ``get`` or
``export`` removes its part file on the way out.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

from .. import __version__
from ..errors import ImporterError, Terminated

Handler = Callable[[argparse.Namespace], int]

#: Modules that register subcommands, in the order ``--help`` lists them.
COMMAND_MODULES = ("add", "blocks", "archives", "index", "pins", "store", "node", "mirror", "serve")

#: The module that registers each subcommand. A command line that names one builds a parser of
#: that module alone: importing every command module (and the archive, DAG-CBOR and profile
#: modules behind them) is most of a short command's start-up, which is most of a 50 MB ``push``
#: measured against curl (issue 12). ``--help`` alone, or a name not here, builds the whole parser.
COMMAND_MODULE = {
    "add": "add",
    "cat": "blocks", "export": "blocks", "get": "blocks", "import-car": "blocks", "ls": "blocks",
    "auto": "archives", "fetch": "archives", "inspect": "archives", "sdist": "archives", "verify": "archives",
    "wheel": "archives",
    "delete": "index", "list": "index",
    "pin": "pins",
    "store": "store",
    "push": "node", "serve-blocks": "node",
    "mirror": "mirror",
    "serve": "serve",
}

#: Global options that take a value (the word after them is not the subcommand).
_GLOBAL_OPTIONS_WITH_VALUE = ("--store",)


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in the CLI's one-line form: ``dpip-import CMD: message``, then
    where the options are listed, instead of the whole usage block (exit 2, as argparse's).
    Subcommand parsers are made of the same class (``add_subparsers`` uses the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, usage_error(self.prog, message))


def usage_error(prog: str, message: str) -> str:
    """The line a usage error prints: ``dpip-import CMD: message (see `dpip-import CMD --help`)``."""
    return f"{prog}: {message} (see `{prog} --help`)\n"


def named_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is neither an option nor a global option's value."""
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_OPTIONS_WITH_VALUE:
            next(words, None)
        elif word == "--":
            return next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, of only the module that registers the subcommand it names."""
    from .options import STORE_HELP

    parser = Parser(
        prog="dpip-import",
        description="Put files, wheels and sdists into IPFS as Kubo would, and get them back.",
        epilog="--store, --json and --debug may also follow the subcommand.",
    )
    parser.add_argument("--version", action="version", version=f"dpip-import {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--store", metavar="DIR", help=STORE_HELP)
    parser.add_argument("--json", action="store_true", help="machine-readable output, for the commands that have it")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    named = None if argv is None else named_command(argv)
    for name in (COMMAND_MODULE[named],) if named in COMMAND_MODULE else COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":
                continue  # a command group not written yet
            raise
        module.register(sub)
    _accept_global_options(parser)
    return parser


def _accept_global_options(parser: argparse.ArgumentParser) -> None:
    """Let every subcommand (and group) take the global options after its name, without changing defaults."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in {id(p): p for p in action.choices.values()}.values():
            known = child._option_string_actions
            if "--debug" not in known:
                child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            if "--store" not in known:
                child.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            if "--json" not in known:
                child.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            _accept_global_options(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dpip-import`` with ``argv``; return the exit code."""
    from .options import normalize_go_bool_flags

    words = normalize_go_bool_flags(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(words)
    args, unknown = parser.parse_known_args(words)
    handler = cast(Handler, args.handler)
    # "store gc", "pin add": the group's action is part of the name errors are reported under.
    command = " ".join([args.command, *(str(v) for k, v in sorted(vars(args).items()) if k.endswith("_command"))])
    if unknown:  # argparse would blame the top-level parser: name the subcommand that was given them
        parser.exit(2, usage_error(f"{parser.prog} {command}", f"unrecognized arguments: {' '.join(unknown)}"))
    restore = _raise_on_termination()
    try:
        return handler(args)
    except Terminated as e:
        print(f"dpip-import {command}: terminated", file=sys.stderr)
        return 128 + e.signum
    except ImporterError as e:
        if args.debug:
            raise
        print(f"dpip-import {command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dpip-import {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): exit quietly, as cat would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as e:
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"dpip-import {command}: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        restore()


#: Signals that end a command through an exception (cleanup runs) rather than at once.
TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _raise_on_termination() -> Callable[[], None]:
    """Install :func:`_terminate` for SIGTERM and SIGHUP where they have their default action
    (a signal the caller ignores, as ``nohup`` ignores SIGHUP, stays ignored); return the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread
    previous: list[tuple[int, object]] = []
    for name in TERMINATING_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
            previous.append((signum, signal.signal(signum, _terminate)))

    def restore() -> None:
        for signum, handler in previous:
            signal.signal(signum, handler)  # type: ignore[arg-type]

    return restore


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
