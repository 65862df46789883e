"""Options shared by several subcommands: the import settings flags, ``--store`` and ``--json``.

``--store``, ``--json`` and ``--debug`` are global: :mod:`importer.cli.main` gives them their
defaults on the top-level parser, and every subcommand accepts them too with
``default=SUPPRESS``, so ``dpip-import --store S ls X`` and ``dpip-import ls X --store S`` agree
(a subparser's own default would otherwise overwrite the value given before the subcommand).
"""

from __future__ import annotations

import argparse

from ..chunkers import parse_chunker
from ..errors import InvalidOption
from ..profiles import PROFILES, ImportSettings, resolve_settings


def parse_bool(text: str) -> bool:
    """Go-style boolean flag values (``--raw-leaves=false``)."""
    lowered = text.lower()
    if lowered in ("1", "t", "true", "yes"):
        return True
    if lowered in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


#: Go's flag package accepts ``--flag`` and ``--flag=false`` for booleans but never takes the next
#: word as the value; argparse cannot express that, so ``--flag=VALUE`` is rewritten to a hidden
#: ``--flag-value-`` option by :func:`normalize_go_bool_flags` before parsing.
GO_BOOL_FLAGS = ("--raw-leaves", "--pin", "--pin-roots")
GO_BOOL_SUFFIX = "-value-"


def normalize_go_bool_flags(argv: list[str]) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if arg == "--":
            out.extend(argv[len(out):])
            break
        name, eq, value = arg.partition("=")
        out.append(f"{name}{GO_BOOL_SUFFIX}={value}" if eq and name in GO_BOOL_FLAGS else arg)
    return out


STORE_HELP = "embedded block store (default: $DPIP_STORE, else the user data directory)"


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS, help=STORE_HELP)


def add_json_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help_text)


def add_go_bool(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, help_text: str,
                default: bool | None) -> None:
    """A Go-style boolean flag: ``--flag`` or ``--flag=true|false`` (see :func:`normalize_go_bool_flags`)."""
    dest = flag.removeprefix("--").replace("-", "_")
    parser.add_argument(flag, dest=dest, action="store_const", const=True, default=default, help=help_text)
    parser.add_argument(flag + GO_BOOL_SUFFIX, dest=dest, type=parse_bool, help=argparse.SUPPRESS)


def add_import_options(parser: argparse.ArgumentParser) -> None:
    """The flags that decide the bytes of a UnixFS import, with Kubo's names."""
    g = parser.add_argument_group("UnixFS import settings (Kubo's flags)")
    g.add_argument("--profile", choices=sorted(PROFILES), help="IPIP-499 profile; explicit flags win over it")
    g.add_argument("--cid-version", type=int, choices=(0, 1), help="CID version (default 0; 1 implies raw leaves)")
    add_go_bool(g, "--raw-leaves", "store leaves as raw blocks; --raw-leaves=false to refuse (default: true for CIDv1)",
                None)
    g.add_argument("-s", "--chunker", metavar="SPEC",
                   help="size-N (default size-262144), rabin, rabin-AVG, rabin-MIN-AVG-MAX, buzhash; "
                        "fastcdc-MIN-AVG-MAX is not a Kubo chunker (its CIDs exist only here)")
    g.add_argument("-t", "--trickle", action="store_true", default=None, help="trickle layout instead of balanced")
    g.add_argument("--max-file-links", type=int, metavar="N", help="links per file node (default 174)")
    g.add_argument("--hamt-threshold", type=int, metavar="BYTES",
                   help="Import.UnixFSHAMTDirectorySizeThreshold (default 262144)")
    g.add_argument("--hamt-size-estimation", choices=("links", "block", "disabled"),
                   help="Import.UnixFSHAMTDirectorySizeEstimation (default links)")
    g.add_argument("--hamt-fanout", type=int, metavar="N", help="Import.UnixFSHAMTDirectoryMaxFanout (default 256)")
    g.add_argument("--max-directory-links", type=int, metavar="N",
                   help="Import.UnixFSDirectoryMaxLinks: shard above N entries (default 0, off)")
    g.add_argument("-H", "--hidden", action="store_true", help="include files whose name starts with '.'")
    g.add_argument("--preserve-mode", action="store_true", help="store each file's permission bits")
    g.add_argument("--preserve-mtime", action="store_true", help="store each file's modification time")


def settings_from_args(args: argparse.Namespace) -> ImportSettings:
    """Resolve the parsed flags into settings, validating the chunker spec up front."""
    settings = resolve_settings(
        profile=args.profile,
        cid_version=args.cid_version,
        raw_leaves=args.raw_leaves,
        chunker=args.chunker,
        trickle=args.trickle,
        max_file_links=args.max_file_links,
        hamt_threshold=args.hamt_threshold,
        hamt_fanout=args.hamt_fanout,
        size_estimation=args.hamt_size_estimation,
        max_directory_links=args.max_directory_links,
        preserve_mode=args.preserve_mode,
        preserve_mtime=args.preserve_mtime,
        hidden=args.hidden,
    )
    parse_chunker(settings.chunker)
    if args.hamt_threshold is not None and args.hamt_threshold < 0:
        raise InvalidOption(f"--hamt-threshold must not be negative, got {args.hamt_threshold}")
    return settings
