"""``python -m bench.train_dictionary``: train the zstd dictionary the store ships for small blocks.

A new store trains its own dictionary only after :data:`~importer.sinks.store.TRAIN_AFTER` small
blocks, so the first archives of a small store (a mirror of a few projects) never get one. The
package therefore ships a dictionary trained on Python packages: this script imports the archives
of a locked set (by default ``dictsource``: the newest release of the top100 projects under 20 MB,
except those the store is measured on) the way ``dpip-import`` does, into memory, and trains on
the blocks under :data:`~importer.sinks.atrest.SMALL_BLOCK` they make (source files, metadata,
RECORD files, directory nodes, recipes), at the level grouped frames are made at. The archives come
from the benchmark's download cache, never from the repository; the dictionary (64 KiB) is package
data, :data:`importer.sinks.atrest.SHIPPED_DICTIONARY`, its ID :data:`~importer.sinks.atrest.SHIPPED_ID`.

    python -m bench.train_dictionary [--packages dictsource] [--out importer/sinks/data/python.zdict]

It prints what the dictionary does on blocks it was not trained on: one archive in every
:data:`HOLD_OUT` is kept out of training and its small blocks compressed in frames as the store
groups them, with and without the dictionary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zstandard

from importer.archive.importer import import_archive
from importer.profiles import resolve_settings
from importer.sinks.atrest import DICT_SIZE, SHIPPED_DICTIONARY, SHIPPED_ID, SMALL_BLOCK, with_dict_id
from importer.sinks.base import MemorySink
from importer.sinks.packs import FRAME_BYTES, FRAME_LEVEL

from .datasets import ensure_downloaded, load_lock

#: Every this-many-th archive is held out of training to measure the dictionary on.
HOLD_OUT = 5


def small_blocks(paths: list[Path]) -> list[bytes]:
    """The distinct blocks under SMALL_BLOCK that importing ``paths`` makes, in import order."""
    sink = MemorySink()
    for path in paths:
        import_archive(str(path), resolve_settings(), sink)
    return [block for block in sink.blocks.values() if 0 < len(block) < SMALL_BLOCK]


def framed_size(blocks: list[bytes], dictionary: zstandard.ZstdCompressionDict | None) -> int:
    """Bytes of ``blocks`` grouped into frames as the store's packs group them."""
    compressor = zstandard.ZstdCompressor(level=FRAME_LEVEL, dict_data=dictionary, write_checksum=False)
    total, group, size = 0, [], 0
    for block in blocks:
        group.append(block)
        size += len(block)
        if size >= FRAME_BYTES:
            total += len(compressor.compress(b"".join(group)))
            group, size = [], 0
    return total + (len(compressor.compress(b"".join(group))) if group else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_dictionary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", default="dictsource", help="the locked set to train on")
    parser.add_argument("--out", type=Path, default=Path(str(SHIPPED_DICTIONARY)))
    args = parser.parse_args(argv)
    entries = load_lock(args.packages)
    downloads = ensure_downloaded(entries, progress=False)
    paths = [downloads[e.filename] for e in entries if e.filename in downloads]
    train_paths = [p for i, p in enumerate(paths) if i % HOLD_OUT]
    test_paths = [p for i, p in enumerate(paths) if not i % HOLD_OUT]
    start = time.perf_counter()
    train, test = small_blocks(train_paths), small_blocks(test_paths)
    trained = zstandard.train_dictionary(DICT_SIZE, list(train), level=FRAME_LEVEL)
    data = with_dict_id(trained.as_bytes(), SHIPPED_ID)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    seconds = time.perf_counter() - start
    dictionary = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
    plain, with_dict = framed_size(test, None), framed_size(test, dictionary)
    print(f"{args.out}: {len(data):,d} bytes, trained on {len(train):,d} small blocks ({sum(map(len, train)):,d} B) "
          f"of {len(train_paths)} archives in {seconds:.0f} s")
    print(f"held out: {len(test):,d} small blocks ({sum(map(len, test)):,d} B) of {len(test_paths)} archives, in "
          f"{FRAME_BYTES // 1024} KiB frames at level {FRAME_LEVEL}: {plain:,d} B without, {with_dict:,d} B with "
          f"the dictionary ({with_dict / plain:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
