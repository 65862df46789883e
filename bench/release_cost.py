"""``python -m bench.release_cost``: what each release of a project costs one store, against its patch.

Issue 14 found that small releases pay a fixed overhead: "a one-line release of boto3 costs 37 KB
against about 1 KB for the patch; requests 56 KB against 13 KB". This command measures that
cost now. It imports a chain of archives, one ``dpip-import auto --store DIR FILE`` process per
archive in the order given (the real CLI: compressor search, deltas against the previous
release, packs, dictionaries), into one fresh store, and prints per archive:

* the growth of the payload (``store stats`` at rest: payloads, packs, dictionaries) and of the
  store's files (database and log, :mod:`bench.diskusage`) that its import caused;
* its ``patch``: the archive's decompressed body as ``zstd -19 --long=31 --patch-from`` the
  previous archive of the same kind (wheel or sdist; the first one of a kind compressed alone),
  the bound of :mod:`bench.delta_zstd`;
* where its new bytes are at rest, by role (:func:`bench.diskusage.bytes_by_archive`: leaves of
  files, file nodes, directory nodes, the recipe and its pages, the skeleton, the archive's
  root; each block counted for the first archive that has it), read once the chain is in.

A second table sums the archives after the first of each kind. A third one shows what the
skeleton (a zstd -19 frame inside the archive's DAG: its bytes the store can neither compress
nor delta) would weigh as a zstd -19 frame made against the previous skeleton of its kind
(uncompressed, as a raw-content dictionary), and what a delta of the frame itself gives.

    python -m bench.release_cost [--store DIR] FILE...
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import zstandard

from importer.archive.finish import SKELETON_ZSTD_LEVEL
from importer.archive.recipe import read_recipe, read_root
from importer.dag.reader import iter_file
from importer.sinks.store import BlockStore

from .child_cli import run_cli
from .decoded import DecodedArchive, decode_archive
from .delta_zstd import delta_patch
from .diskusage import ROLES, bytes_by_archive, disk_usage
from .report import _table

HEADER = ["archive", "archive B", "patch B", "payload +B", "file +B", "payload / patch",
          *(f"{role} B" for role in ROLES)]
#: The columns :func:`later_releases` sums (every one but the name and the ratio).
_SUMMED = [column for column in HEADER if column.endswith((" B", "+B"))]


def _kind(name: str) -> str:
    return "wheel" if name.endswith(".whl") else "sdist"


def _payload(store: Path) -> int:
    with BlockStore(store, create=False) as opened:
        return opened.stats().at_rest_bytes


def measure(files: list[Path], store: Path) -> list[list[str]]:
    """Import ``files`` one by one into ``store`` (which must not exist); a row per archive."""
    previous: dict[str, DecodedArchive] = {}
    rows: list[tuple[Path, int, int, int]] = []
    payload = disk = 0
    for path in files:
        run_cli(["auto", "--store", str(store), str(path)])
        now_payload, now_disk = _payload(store), disk_usage(store).disk_bytes
        decoded = decode_archive(path.read_bytes(), path.name, _kind(path.name))
        patch = len(delta_patch(previous.get(_kind(path.name)), decoded))
        previous[_kind(path.name)] = decoded
        rows.append((path, patch, now_payload - payload, now_disk - disk))
        payload, disk = now_payload, now_disk
        print(f"{path.name}: payload +{rows[-1][2]:,} B, file +{rows[-1][3]:,} B, patch {patch:,} B",
              file=sys.stderr, flush=True)
    roles = bytes_by_archive(store)
    table = []
    for path, patch, grew, file_grew in rows:
        split = roles.get(path.name, {})
        table.append([path.name, f"{path.stat().st_size:,}", f"{patch:,}", f"{grew:,}", f"{file_grew:,}",
                      f"{grew / patch:.1f}", *(f"{split.get(role, (0, 0))[1]:,}" for role in ROLES)])
    return table


def later_releases(table: list[list[str]]) -> list[list[str]]:
    """Per kind, the rows of the archives after the first of their kind summed: what a release costs
    once the project is in the store (the first one of a kind pays for the whole content)."""
    sums: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for row in table:
        named = dict(zip(HEADER, row, strict=True))
        kind = _kind(named["archive"])
        if kind not in seen:
            seen.add(kind)
            continue
        total = sums.setdefault(kind, {"n": 0})
        total["n"] += 1
        for column in _SUMMED:
            total[column] = total.get(column, 0) + int(named[column].replace(",", ""))
    return [[f"{total['n']} later {kind}s", *(f"{total[c]:,}" for c in HEADER[1:5]),
             f"{total['payload +B'] / total['patch B']:.1f}", *(f"{total[c]:,}" for c in HEADER[6:])]
            for kind, total in sums.items()]


SKELETON_HEADER = ["archive", "skeleton B", "frame B", "frame against the previous frame B",
                   "raw against the previous raw B"]


def _against(data: bytes, previous: bytes | None) -> int:
    """zstd -19 of ``data``, with ``previous`` as a raw-content dictionary if given."""
    if previous is None:
        return len(zstandard.ZstdCompressor(level=SKELETON_ZSTD_LEVEL).compress(data))
    reference = zstandard.ZstdCompressionDict(previous, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return len(zstandard.ZstdCompressor(level=SKELETON_ZSTD_LEVEL, dict_data=reference).compress(data))


def skeleton_deltas(store: Path) -> list[list[str]]:
    """Per archive (import order): its skeleton's size, its frame's, and the two deltas (docstring)."""
    rows = []
    previous: dict[str, tuple[bytes, bytes]] = {}
    with BlockStore(store, create=False) as opened:
        for record in opened.iter_archives():
            recipe = read_recipe(opened, read_root(opened, record.root).recipe)
            frame = b"".join(iter_file(opened, recipe.skeleton))
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(frame)
            before = previous.get(_kind(record.name))
            rows.append([record.name, f"{len(raw):,}", f"{len(frame):,}",
                         f"{_against(frame, before[0]):,}" if before else "-",
                         f"{_against(raw, before[1]):,}" if before else "-"])
            previous[_kind(record.name)] = frame, raw
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.release_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="the chain, in import order")
    p.add_argument("--store", type=Path, help="make the store here and keep it (default: a temporary one)")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        store = args.store or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dpip-release-cost-"))) / "s"
        if store.exists():
            raise SystemExit(f"release_cost: {store} exists already")
        table = measure(args.files, store)
        print(_table(HEADER, table))
        print()
        print(_table(HEADER, later_releases(table)))
        print()
        print(_table(SKELETON_HEADER, skeleton_deltas(store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
