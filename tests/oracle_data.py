"""Deterministic inputs for the differential tests: Kubo's ChaCha20 byte stream, mixed trees,
trees with distinct modes and mtimes, and flat directories sized to land exactly on either side
of the HAMT switch.

Everything is a pure function of its arguments, so every xdist worker (and every machine) builds
byte-identical inputs and the oracles' answers can be computed once and shared.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

KiB: Final = 1024
MiB: Final = 1024 * KiB
#: Kubo's default HAMT switch: Import.UnixFSHAMTDirectorySizeThreshold = 256KiB.
HAMT_THRESHOLD: Final = 256 * KiB
#: Kubo test/cli name alphabet (add_test.go createDeterministicFiles): 39 characters, "0" twice.
NAME_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz01234567890-_"
_WRITE_CHUNK: Final = 4 * MiB


class ChaChaStream:
    """Kubo's deterministic test bytes (test/cli/testutils/random_deterministic.go).

    The ChaCha20 (RFC 8439) keystream with key = SHA-256(seed), a zero 96-bit nonce and the block
    counter from 0; reads continue the stream. ``cryptography`` takes a 16-byte nonce that is the
    4-byte little-endian counter followed by the 12-byte nonce, so all zeros here.

    >>> ChaChaStream("x").read(4).hex() == ChaChaStream("x").read(8)[:4].hex()
    True
    """

    def __init__(self, seed: str) -> None:
        key = hashlib.sha256(seed.encode()).digest()
        self._enc = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def read(self, n: int) -> bytes:
        return self._enc.update(bytes(n))


def random_bytes(seed: str, n: int) -> bytes:
    """The first ``n`` bytes of the stream for ``seed``."""
    return ChaChaStream(seed).read(n)


def write_random_file(path: Path, size: int, seed: str | None = None) -> Path:
    """Write ``size`` stream bytes (seed defaults to the file name) without holding them all."""
    stream = ChaChaStream(seed if seed is not None else path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, _WRITE_CHUNK)
            f.write(stream.read(n))
            left -= n
    return path


def stream_names(seed: str, count: int, length: int, last_length: int | None = None) -> list[str]:
    """``count`` names from the stream, as Kubo's tests make them (add_test.go
    createDeterministicFiles): ``length`` characters each, the last one ``last_length``."""
    stream = ChaChaStream(seed)
    lengths = [length] * (count - 1) + [length if last_length is None else last_length]
    return ["".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in stream.read(n)) for n in lengths]


# ---------------------------------------------------------------------------------------------
# A tree with every kind of entry


def make_mixed_tree(root: Path) -> Path:
    """A tree of nested, empty and hidden dirs, empty and multi-chunk files, symlinks (relative,
    absolute, dangling, to a dir) and non-ASCII names (NFC and NFD spellings side by side)."""
    def text(rel: str, data: bytes) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    root.mkdir(parents=True)
    text("a.txt", b"hello world\n")
    text("empty.bin", b"")
    write_random_file(root / "big.bin", 600_000)  # 3 chunks at 256 KiB: a 2-level file
    text("zeros.bin", bytes(MiB))  # 4 identical chunks: the same leaf linked 4 times
    text(".hidden-file", b"hidden\n")
    text(".hidden-dir/inner.txt", b"inner\n")
    (root / "emptydir").mkdir()
    text("nested/deeper/deepest/leaf.txt", b"leaf\n")
    (root / "nested/deeper/empty").mkdir(parents=True)
    write_random_file(root / "nested/x.bin", 70_000)
    for name in ("naïve café.txt", "日本語.txt", "emoji-\U0001f600", "e\u0301", "\u00e9", "with space",
                 "UPPER", "lower", "-dash", "_under", "0digit", "a" * 200):
        text(name, name.encode() + b"\n")
    os.symlink("a.txt", root / "link-rel")
    os.symlink("does/not/exist", root / "link-dangling")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("nested", root / "link-dir")
    os.symlink("日本語.txt", root / "link-utf8")
    os.symlink("../a.txt", root / "nested/link-up")
    return root


# ---------------------------------------------------------------------------------------------
# Trees whose entries carry distinct modes and mtimes (for --preserve-mode / --preserve-mtime)

#: 2020-10-24T11:42:00Z, the mtime of Kubo's t0047 sharness vectors.
BASE_MTIME_S: Final = 1603539720
#: Modes other than 0644 (files) and 0755 (dirs), which the JS importer would leave out although
#: Kubo stores them; setuid, setgid and sticky bits included.
FILE_MODES: Final = (0o600, 0o640, 0o444, 0o700, 0o4755, 0o2750, 0o1777, 0o764)
DIR_MODES: Final = (0o700, 0o750, 0o2775, 0o1777, 0o713)


def make_attr_tree(root: Path, file_sizes: list[int]) -> Path:
    """A tree of files of ``file_sizes`` (each a random stream), nested and empty dirs, a hidden
    file and symlinks, with distinct modes and mtimes: some whole seconds (Kubo then stores no
    nanoseconds), some with nanoseconds, one before 1970 (a negative varint)."""
    files = [(root / f"f{i}", size) for i, size in enumerate(file_sizes)]
    files += [(root / "sub" / "deeper" / f"g{i}", size) for i, size in enumerate(file_sizes[:2])]
    files.append((root / ".hidden", file_sizes[0]))
    for path, size in files:
        write_random_file(path, size, seed=f"attr-{path.name}-{size}")
    (root / "sub" / "empty-dir").mkdir(parents=True)
    links = [root / "link", root / "sub" / "link-up"]
    os.symlink(files[0][0].name, links[0])
    os.symlink("../" + files[1][0].name, links[1])
    dirs = sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts))
    for i, (path, _) in enumerate(files):
        path.chmod(FILE_MODES[i % len(FILE_MODES)])
    for i, path in enumerate([*links, *(p for p, _ in files), *dirs, root]):
        seconds = -86_401 if i == 4 else BASE_MTIME_S + 97 * i  # one mtime before the epoch
        nanos = 0 if i % 3 == 0 else 54_321 * (i + 1)
        os.utime(path, ns=(seconds * 1_000_000_000 + nanos,) * 2, follow_symlinks=False)
    for i, path in enumerate([*dirs, root]):  # after the mtimes: chmod leaves mtime alone
        path.chmod(DIR_MODES[i % len(DIR_MODES)])
    return root


# ---------------------------------------------------------------------------------------------
# Flat directories on either side of the HAMT switch


def uvarint_len(n: int) -> int:
    """Bytes of ``n`` as a protobuf varint (7 bits per byte)."""
    return max(1, (n.bit_length() + 6) // 7)


@dataclass(frozen=True, slots=True)
class DirSizing:
    """Kubo's size estimate of a basic directory: ``base + Σ (per_entry + len(name))``.

    Valid while every name and every link body stays below 128 bytes (one-byte varints).
    """

    base: int
    per_entry: int

    @classmethod
    def links(cls, cid_len: int) -> DirSizing:
        """``links`` estimation (boxo directory.go): Σ len(name) + len(CID bytes)."""
        return cls(0, cid_len)

    @classmethod
    def block(cls, cid_len: int, tsize: int) -> DirSizing:
        """``block`` estimation: the exact PBNode size.

        Base = the Data field ``0a 02 08 01`` (4 bytes). Per link: ``12 <len> <body>`` with body
        = ``0a <len> <cid>`` + ``12 <len> <name>`` + ``18 <varint tsize>``, so
        2 + (2 + cid_len) + (2 + len(name)) + (1 + varint_len(tsize)).
        """
        return cls(4, 2 + (2 + cid_len) + 2 + (1 + uvarint_len(tsize)))

    def size(self, names: list[str]) -> int:
        return self.base + sum(self.per_entry + len(n.encode()) for n in names)


def sized_names(sizing: DirSizing, target: int, name_len: int = 70, seed: str = "hamt") -> list[str]:
    """Unique names whose directory estimate is exactly ``target``.

    Names are a 5-digit index (for uniqueness) plus stream characters; the remainder that
    ``name_len``-character names cannot reach is spread as one extra character on the first names.
    """
    per = sizing.per_entry + name_len
    count, extra = divmod(target - sizing.base, per)
    assert extra <= count and name_len + 1 < 128, (target, sizing, name_len)
    tails = stream_names(seed, count, name_len + 1 - 5)
    names = [f"{i:05d}{tail[: name_len - 5 + (1 if i < extra else 0)]}" for i, tail in enumerate(tails)]
    assert sizing.size(names) == target
    return names


def make_flat_dir(path: Path, names: list[str], content: bytes | None = b"x") -> Path:
    """A directory of files called ``names``, each holding ``content`` (None: its own name)."""
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_bytes(content if content is not None else name.encode())
    return path
