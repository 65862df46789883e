"""``dpip-import wheel|sdist|auto|fetch|verify|inspect``: the structure-aware archive commands.

``fetch``, ``verify`` and ``inspect`` take an archive by root CID, file name or sha256
(:mod:`importer.cli.lookup`). ``wheel`` takes wheels only and ``sdist`` anything else, told
apart by content and name (:func:`check_kind`); ``auto`` takes both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dag.cid import format_cid
from ..errors import InvalidArchive, InvalidOption
from ..sinks.base import BlockSink, NullSink
from ..sinks.counting import CountingSink
from ..sinks.guard import BlockSizeGuard
from ..sources.base import DEFAULT_LIMITS, RATIO_FLOOR, Limits, detect_format
from .blocks import FORCE_HELP
from .node import add_push_options, push_roots
from .options import add_import_options, add_json_option, add_store_option, settings_from_args
from .source import add_source_options, archive_index, open_block_source

# The archive machinery (compressor backends, zstd, the store) is imported by the handlers
# that use it, so that `dpip-import add` does not pay ~60 ms of start-up for it.
if TYPE_CHECKING:
    from ..archive.delta import DeltaReport
    from ..archive.importer import ImportReport
    from ..archive.plan import RebuildLimits
    from ..sinks.store import BlockStore

#: ``--open-nested`` default, chosen from the benchmark (REPORT.md, "Nested members").
OPEN_NESTED_DEFAULT = False

_KINDS = {
    "wheel": "import wheels (.whl: zip archives)",
    "sdist": "import sdists (.tar.gz, .tgz, .tar.bz2, .tar.xz, .tar, .zip)",
    "auto": "import wheels or sdists, the format read from the content",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for kind, help_text in _KINDS.items():
        p = sub.add_parser(kind, help=help_text, description=help_text + ": each file becomes a UnixFS tree of "
                           "its members plus a recipe that rebuilds it byte for byte.")
        p.add_argument("files", nargs="+", metavar="FILE", help="archive files to import")
        add_json_option(p, "one JSON object per archive")
        p.add_argument("--verbose", action="store_true", help="per-member detail")
        p.add_argument("-n", "--only-hash", action="store_true", help="compute CIDs only; store nothing")
        p.add_argument("--open-nested", action=argparse.BooleanOptionalAction, default=OPEN_NESTED_DEFAULT,
                       help="import members that are themselves archives or .gz files recursively: in the tree "
                            "such a member is a directory of its contents (docs/recipe.md); default: "
                            f"{'on' if OPEN_NESTED_DEFAULT else 'off'}")
        _add_limit_options(p)
        add_import_options(p)
        add_store_option(p)
        p.add_argument("--car", metavar="FILE", help="also write every archive's blocks to this CARv1 file (roots in "
                                                     "the header); the store keeps them too unless --no-store")
        p.add_argument("--no-store", action="store_true",
                       help="with --car: write only the CAR; nothing goes into the store or its index")
        p.add_argument("--delta", action=argparse.BooleanOptionalAction, default=True,
                       help="in a compressing store, keep the leaves of files changed since the project's "
                            "previous archive as zstd deltas against its leaves (default: on)")
        add_push_options(p, after_import=True)
        p.set_defaults(handler=run_import, kind=kind)
    from .lookup import ARCHIVE_ARG_HELP

    p = sub.add_parser("fetch", help="rebuild an archive from its root, checked against its sha256")
    p.add_argument("root", metavar="ARCHIVE", help=ARCHIVE_ARG_HELP)
    p.add_argument("-o", "--output", metavar="OUT",
                   help="FILE to write, DIR to write DIR/<name>, or - for stdout (default: <name> in the current "
                        "directory, when the root's name is a plain wheel or sdist file name)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    _add_rebuild_limit(p)
    add_source_options(p)
    p.set_defaults(handler=run_fetch)
    p = sub.add_parser("verify", help="rebuild an archive without writing it and check every block")
    p.add_argument("root", metavar="ARCHIVE", help=ARCHIVE_ARG_HELP)
    _add_rebuild_limit(p)
    add_source_options(p)
    p.set_defaults(handler=run_verify)
    p = sub.add_parser("inspect", help="show an archive's recipe in human terms")
    p.add_argument("root", metavar="ARCHIVE", help=ARCHIVE_ARG_HELP)
    add_source_options(p)
    p.set_defaults(handler=run_inspect)


def _add_rebuild_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-total-size", type=int, metavar="BYTES", default=DEFAULT_LIMITS.max_total_size,
                   help="refuse a rebuild that reads more file contents than this across nested archives, or whose "
                        "roots declare more than 4 times this (default 16 GiB, the import's own limit)")


def _rebuild_limits(args: argparse.Namespace) -> RebuildLimits:
    from ..archive.plan import RebuildLimits

    return RebuildLimits(max_total_size=args.max_total_size, max_work=4 * args.max_total_size)


# --- import limits (README "Import limits") ----------------------------------------------------


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    """The caps that bound the work of one import, however hostile the archive (sources/base.py)."""
    d = DEFAULT_LIMITS
    p.add_argument("--max-member-size", type=_count, metavar="BYTES", default=d.max_member_size,
                   help=f"refuse a member whose content is larger (default {d.max_member_size}: 4 GiB)")
    p.add_argument("--max-total-size", type=_count, metavar="BYTES", default=d.max_total_size,
                   help="refuse an import that decompresses more, every member, container stream and nesting "
                        f"level counted (default {d.max_total_size}: 16 GiB)")
    p.add_argument("--max-ratio", type=_count, metavar="N", default=d.max_ratio,
                   help="refuse an import that decompresses more than N bytes per byte of the archive, nesting "
                        f"levels included (any archive may reach {RATIO_FLOOR} bytes; default {d.max_ratio})")
    p.add_argument("--max-members", type=_count, metavar="N", default=d.max_members,
                   help=f"refuse an archive with more members (default {d.max_members})")
    p.add_argument("--max-trailing-size", type=_count, metavar="BYTES", default=d.max_trailing_size,
                   help="refuse an archive with more bytes after its end (tar end blocks, last gzip/bzip2/xz "
                        f"stream, zip end record; default {d.max_trailing_size}: 1 MiB)")


def _count(text: str) -> int:
    """A non-negative integer option value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(max_member_size=args.max_member_size, max_total_size=args.max_total_size,
                  max_members=args.max_members, max_ratio=args.max_ratio,
                  max_trailing_size=args.max_trailing_size)


#: PEP 427: ``{distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl``,
#: where the build tag starts with a digit and no part contains ``-``.
WHEEL_NAME = re.compile(r"[^-/]+-[^-/]+(-\d[^-/]*)?-[^-/]+-[^-/]+-[^-/]+\.whl")
#: The one member every wheel has (PEP 427 "The .dist-info directory").
WHEEL_METADATA = re.compile(r"[^/]+\.dist-info/WHEEL")


def check_kind(kind: str, path: str, limits: Limits) -> None:
    """Refuse a file the command does not take: ``wheel`` wants a wheel, ``sdist`` anything else.

    A wheel is a zip with a ``NAME.dist-info/WHEEL`` member and a PEP 427 file name; a zip
    sdist has neither. ``auto`` takes any archive. Unreadable content is left for the import to
    report (with the member and offset).
    """
    if kind == "auto":
        return
    with open(path, "rb") as f:
        found = detect_format(f.read(512))
        is_wheel = False
        if found == "zip":
            from ..sources.zip import parse_zip

            named = WHEEL_NAME.fullmatch(os.path.basename(path)) is not None
            is_wheel = named and any(m.name and WHEEL_METADATA.fullmatch(m.name)
                                     for m in parse_zip(f, path, limits).members)
    if kind == "wheel" and found is not None and not is_wheel:
        why = (f"the content is {found}, not a zip" if found != "zip"
               else "it needs a NAME.dist-info/WHEEL member and a NAME-VERSION-PY-ABI-PLATFORM.whl name (PEP 427)")
        raise InvalidArchive(path, f"not a wheel: {why}; `dpip-import sdist` or `auto` imports it")
    if kind == "sdist" and is_wheel:
        raise InvalidArchive(path, "a wheel, not an sdist (a .dist-info/WHEEL member and a PEP 427 name); "
                                   "`dpip-import wheel` or `auto` imports it")


def run_import(args: argparse.Namespace) -> int:
    from ..archive.delta import delta_against_previous
    from ..archive.importer import ArchiveImporter
    from ..sinks.store import ArchiveRecord, BlockStore, default_store_path

    settings = settings_from_args(args)
    if args.preserve_mode or args.preserve_mtime:
        # An archive's tree is what extracting it gives; member modes and times stay in the
        # skeleton (they are rebuilt exactly), so these flags would silently do nothing.
        raise InvalidOption("--preserve-mode and --preserve-mtime apply to add only: an archive's member "
                            "modes and times are kept in its recipe, not in the tree")
    limits = _limits_from_args(args)
    if args.only_hash and args.car:
        raise InvalidOption("--only-hash stores nothing; it cannot be combined with --car")
    if args.push and (args.only_hash or args.car):
        raise InvalidOption("--push sends archives from the embedded store: not with --only-hash or --car")
    if args.no_store and not args.car:
        raise InvalidOption("--no-store writes only the CAR: it needs --car (-n computes CIDs without writing)")
    for path in args.files:
        if not os.path.isfile(path):
            raise InvalidArchive(path, "no such file" if not os.path.exists(path) else "not a regular file")
    for path in args.files:  # before anything is written: a refused file imports nothing
        check_kind(args.kind, path, limits)
    store: BlockStore | None = None
    sink: BlockSink
    staging = args.car and args.no_store
    if args.only_hash:
        sink = NullSink()
    elif staging:
        import tempfile

        staging_dir = tempfile.mkdtemp(prefix=".dpip-car-", dir=os.path.dirname(os.path.abspath(args.car)))
        store = BlockStore(os.path.join(staging_dir, "staging"), compression="none")  # read once, then deleted
        sink = store
    else:
        store = BlockStore(default_store_path(args.store))
        sink = store
    roots: list[bytes] = []
    # The embedded store keeps the GNU gzip attempt memo between processes; it is read and written
    # here, on the thread that opened the store (the search's threads only see the in-process memo).
    memo_store = store if store is not None and not staging else None
    if memo_store is not None:
        _load_attempts(memo_store, args.command)
    try:
        for path in args.files:
            counting = CountingSink(BlockSizeGuard(sink))  # no block over 1 MiB (sinks/guard.py)
            file_before = memo_store.page_stats().file_bytes if memo_store is not None else 0
            report = ArchiveImporter(settings, counting, limits=limits, open_nested=args.open_nested).import_file(path)
            roots.append(report.root)
            delta = None
            at_rest = None
            if memo_store is not None:
                if args.delta:
                    # Before the archive is recorded (which commits its blocks): a changed leaf
                    # still buffered is written once, as its delta (BlockStore.delta_encode).
                    delta = delta_against_previous(memo_store, report.file, report.root)
                memo_store.record_archive(ArchiveRecord(report.file, report.root, bytes.fromhex(report.sha256),
                                                        report.size, time.time()))
                _record_attempts(memo_store, args.command)
                at_rest = AtRest(memo_store.payload_bytes(counting.new_cids),
                                 memo_store.page_stats().file_bytes - file_before)
            _print_report(args, report, counting, delta, at_rest)
        if args.car and store is not None:
            from ..sinks.car import export_car

            store.flush()
            export_car(store, roots, args.car)
        if args.push and store is not None:
            store.flush()
            push_roots(args, store, roots)
    finally:
        if store is not None:
            store.close()
            if staging:
                import shutil

                shutil.rmtree(os.path.dirname(store.path), ignore_errors=True)
    return 0


def _load_attempts(store: BlockStore, command: str) -> None:
    """Fill the in-process GNU gzip memo from the store; a failure only costs speed (one line on stderr)."""
    from ..compress.memo import MEMO_ENTRIES
    from ..compress.search import load_spawned_attempts, take_spawned_attempts
    from ..errors import StoreError

    take_spawned_attempts()  # what this process tried before belongs to no import of this store
    try:
        dropped = load_spawned_attempts(store.load_attempts(MEMO_ENTRIES))
    except StoreError as e:
        print(f"dpip-import {command}: warning: gzip attempts not loaded, they will be re-run: {e}", file=sys.stderr)
        return
    if dropped:
        print(f"dpip-import {command}: warning: {dropped} damaged gzip attempt rows in the store ignored", file=sys.stderr)


def _record_attempts(store: BlockStore, command: str) -> None:
    """Write the gzip attempts made or answered since the last call; a failure does not fail the import."""
    from ..compress.memo import MEMO_ENTRIES
    from ..compress.search import take_spawned_attempts
    from ..errors import StoreError

    rows = take_spawned_attempts()
    if not rows:
        return
    try:
        # The store keeps the MEMO_ENTRIES newest rows: as many as a load reads back (memo.py: ~6.4 MB).
        store.record_attempts(rows, MEMO_ENTRIES)
    except StoreError as e:
        print(f"dpip-import {command}: warning: gzip attempts not kept for later imports: {e}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class AtRest:
    """What an import cost the store on disk: its new blocks' payloads as stored (compressed, deltas
    made), and how much the database grew (pages; other writers' commits meanwhile included)."""

    payload_bytes: int
    file_growth_bytes: int


def _print_report(args: argparse.Namespace, report: ImportReport, counting: CountingSink,
                  delta: DeltaReport | None, at_rest: AtRest | None) -> None:
    out = sys.stdout
    if delta is not None and delta.skipped is not None:
        against = f" against {delta.previous}" if delta.previous is not None else ""
        sys.stderr.write(f"dpip-import {args.command}: {report.file}: no deltas{against}: {delta.skipped}\n")
    if args.json:
        data: dict[str, Any] = report.summary()
        # new_bytes: logical (uncompressed) bytes of the new blocks; the *_payload/file_* keys: at rest.
        data.update(blocks=counting.blocks, bytes=counting.bytes, new_blocks=counting.new_blocks,
                    new_bytes=counting.new_bytes)
        if at_rest is not None:
            data.update(new_payload_bytes=at_rest.payload_bytes, store_file_growth_bytes=at_rest.file_growth_bytes)
        if delta is not None:
            data.update(delta_against=delta.previous, delta_blocks=delta.rewritten, delta_saved_bytes=delta.saved,
                        delta_skipped=delta.skipped)
        if args.verbose:
            data["member_detail"] = [
                {"name": m.name, "size": m.size, "stored_size": m.stored_size, "how": m.how, "params": m.params,
                 "path": m.path, "note": m.note} for m in report.member_reports]
        out.write(json.dumps(data) + "\n")
        return
    out.write(f"imported {format_cid(report.root)} {report.file}\n")
    if args.only_hash:
        return
    total = report.replayed_bytes + report.verbatim_bytes
    share = 100.0 * report.replayed_bytes / total if total else 100.0
    out.write(f"  {report.members} members, {share:.2f}% of {total:,d} content bytes rebuilt from file leaves\n")
    where = "the CAR" if at_rest is None else "this store"
    out.write(f"  new in {where}: {counting.new_blocks} of {counting.blocks} blocks, "
              f"{counting.new_bytes:,d} of {counting.bytes:,d} logical bytes (uncompressed)\n")
    if at_rest is not None:
        out.write(f"  at rest: {at_rest.payload_bytes:,d} payload bytes stored, store file "
                  f"{at_rest.file_growth_bytes:+,d} bytes\n")
    if delta is not None and delta.previous is not None and delta.skipped is None:
        out.write(f"  {delta.rewritten} changed blocks stored as deltas against {delta.previous}, "
                  f"{delta.saved:,d} bytes smaller at rest\n")
    elif delta is not None and delta.rewritten:
        out.write(f"  {delta.rewritten} blocks stored as deltas against similar files of this archive, "
                  f"{delta.saved:,d} bytes smaller at rest\n")
    for line in report.outer:
        out.write(f"  container {line}\n")
    for m in report.member_reports:
        if args.verbose or m.how == "verbatim":
            extra = f" [{m.params}]" if m.params else ""
            note = f" ({m.note})" if m.note else ""
            out.write(f"  {m.how:8s} {m.size:>12,d} {m.name}{extra}{note}\n")


def run_fetch(args: argparse.Namespace) -> int:
    from ..archive.rebuild import fetch
    from ..archive.recipe import read_root
    from .lookup import resolve_archive
    from .output import fetch_target, printable

    with open_block_source(args, whole_dags=True) as store:
        root = resolve_archive(archive_index(store), args.root)
        target = fetch_target(args.output, read_root(store, root).name, format_cid(root), force=args.force)
        if target is None:
            archive = fetch(store, root, sys.stdout.buffer, limits=_rebuild_limits(args))
            sys.stdout.buffer.flush()
        else:
            archive = fetch(store, root, target, force=args.force, limits=_rebuild_limits(args))
    where = "stdout" if target is None else printable(str(target))
    print(f"fetched {printable(archive.name)}: {archive.size:,d} bytes, sha256 {archive.sha256.hex()} (verified) "
          f"-> {where}", file=sys.stderr if target is None else sys.stdout)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..archive.plan import RebuildPlan
    from ..archive.rebuild import rebuild
    from ..sinks.car import iter_dag
    from .lookup import resolve_archive
    from .output import printable

    with open_block_source(args, whole_dags=True) as store:
        root = resolve_archive(archive_index(store), args.root)
        plan = RebuildPlan(store, root, _rebuild_limits(args))  # a hostile root is refused before the DAG walk
        blocks = sum(1 for _ in iter_dag(store, root))
        archive = rebuild(store, root, None, limits=plan.limits, plan=plan)
    print(f"ok {printable(archive.name)}: {blocks} blocks checked, rebuild matches sha256 {archive.sha256.hex()}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from ..archive.recipe import read_recipe, read_root
    from ..compress import CompressorParams
    from .lookup import resolve_archive
    from .output import printable

    with open_block_source(args) as store:
        root = read_root(store, resolve_archive(archive_index(store), args.root))
        recipe = read_recipe(store, root.recipe)
    out = sys.stdout
    out.write(f"archive   {printable(root.name)}\n  size    {root.size:,d} bytes\n  sha256  {root.sha256.hex()}\n")
    out.write(f"  tree    {format_cid(root.tree)}\n  recipe  {format_cid(root.recipe)}\n")
    out.write(f"body      {recipe.body}, {len(recipe.members)} members, skeleton {recipe.skeleton_size:,d} bytes "
              f"(stored as zstd in {format_cid(recipe.skeleton)})\n")
    for item in recipe.outer:
        if item is None:
            out.write("outer     the body as it is\n")
        elif isinstance(item, int):
            out.write(f"outer     {item} bytes of container framing\n")
        else:
            how = "kept verbatim" if item.params < 0 else CompressorParams.from_dict(recipe.params[item.params]).label
            out.write(f"outer     compressed stream over body bytes {item.content_offset:,d}+{item.content_size:,d}: "
                      f"{how}\n")
    uses = Counter(m.params for m in recipe.members if m.source != -1)
    for index, count in sorted(uses.items()):
        label = "copied as stored" if index < 0 else CompressorParams.from_dict(recipe.params[index]).label
        out.write(f"members   {count:6d} x {label}\n")
    in_tree = sum(1 for m in recipe.members if isinstance(m.source, str))
    nested = sum(1 for m in recipe.members if isinstance(m.source, bytes))
    out.write(f"sources   {in_tree} from the tree, {nested} nested archives, {len(recipe.extra)} extra files "
              f"linked from the recipe\n")
    return 0
