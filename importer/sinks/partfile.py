"""Writing a result file safely: under a hidden ``.NAME.<random>.part`` name beside its target,
with the usual permissions, moved into place only when complete, removed on any failure.

Used by ``fetch`` (archives), ``export`` (CARs) and ``get`` (single files). The part file is
created with mode 0o666 and ``O_EXCL | O_NOFOLLOW``, so the kernel applies the umask exactly as
for any file a program creates (``tempfile.mkstemp`` would leave 0o600), and nothing already at
that name, a symlink planted there included, is ever written through. Without ``force`` the
part is linked to the target name, which fails if anything appeared there meanwhile, so an
existing file is never replaced, not even by a race; with ``force`` it is renamed over it.

A killed process (SIGKILL, power loss) cannot remove its part file; :func:`sweep_stale_parts`
removes the ones such runs left beside a target, when they are old enough to be dead.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from ..errors import OutputError

PART_SUFFIX: Final = ".part"
#: A part file untouched for an hour belongs to a dead run: a live fetch writes to its part
#: file at least every few seconds (1 MiB pieces; a 16 GiB rebuild takes minutes), so its mtime
#: is always recent, while a run killed by SIGKILL leaves its part frozen. An hour leaves a wide
#: margin for a slow disk or a stopped (SIGSTOP) process, and the exact name pattern means no
#: file the user made is ever touched.
STALE_PART_AGE_S: Final = 3600
#: Hex digits of randomness in a part name: 8 (32 bits), so concurrent runs never collide.
_TOKEN_BYTES: Final = 4


def part_name(target_name: str) -> str:
    """A fresh part file name for ``target_name``: ``.NAME.<8 hex>.part``."""
    return f".{target_name}.{secrets.token_hex(_TOKEN_BYTES)}{PART_SUFFIX}"


def is_part_of(name: str, target_name: str) -> bool:
    """True when ``name`` is a part file :func:`part_name` made for ``target_name``."""
    prefix = f".{target_name}."
    token = name[len(prefix):-len(PART_SUFFIX)]
    return (name.startswith(prefix) and name.endswith(PART_SUFFIX) and len(token) == 2 * _TOKEN_BYTES
            and all(c in "0123456789abcdef" for c in token))


def sweep_stale_parts(directory: Path, target_name: str, now: float | None = None) -> list[str]:
    """Remove the part files of ``target_name`` in ``directory`` that runs killed long ago left.

    Only regular files matching the exact part pattern, owned by this user and untouched for
    STALE_PART_AGE_S are removed; anything else is left alone. Returns the names removed.
    """
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not is_part_of(name, target_name):
            continue
        path = directory / name
        try:
            info = os.lstat(path)
            if (stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()
                    and now - info.st_mtime > STALE_PART_AGE_S):
                os.unlink(path)
                removed.append(name)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def refuse_existing(target: Path, force: bool) -> None:
    """The one rule every command shares: an existing file (or symlink, itself replaced, never
    followed) is replaced only with ``--force``; a directory, device, FIFO or socket never
    (``-o /dev/null --force`` run as root must not put a file where the device was)."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise OutputError(str(target), "is a directory")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputError(str(target), "is not a regular file (a device, FIFO or socket is never replaced)")
    if not force:
        raise OutputError(str(target), "already exists (pass --force to replace it)")


class PartFile:
    """A file written under a part name beside ``target`` and moved there by :meth:`commit`.

    Used as a context manager: leaving the block without a commit (an error, a signal turned
    into an exception) removes the part file.
    """

    def __init__(self, target: str | os.PathLike[str], *, force: bool = False) -> None:
        self.target = Path(target)
        self.force = force
        directory = self.target.parent
        if not directory.is_dir():
            raise OutputError(str(directory), "no such directory")
        refuse_existing(self.target, force)
        sweep_stale_parts(directory, self.target.name)
        self.path = directory / part_name(self.target.name)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o666)
        self.file: BinaryIO | None = os.fdopen(fd, "wb")
        self.committed = False

    @property
    def stream(self) -> BinaryIO:
        """The open part file, for writers that want a binary stream."""
        assert self.file is not None
        return self.file

    def write(self, data: bytes) -> int:
        assert self.file is not None
        return self.file.write(data)

    def commit(self) -> None:
        """Flush to disk, then move the part file to the target name."""
        assert self.file is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        if self.force:
            if os.path.isdir(self.target) and not os.path.islink(self.target):
                raise OutputError(str(self.target), "is a directory")
            os.replace(self.path, self.target)
        else:
            try:
                os.link(self.path, self.target)  # fails if anything is at the name by now
            except FileExistsError:
                raise OutputError(str(self.target), "already exists (pass --force to replace it)") from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # No hard links on this file system (FAT, some FUSE): check, then rename.
                refuse_existing(self.target, False)
                os.replace(self.path, self.target)
            else:
                os.unlink(self.path)
        self.committed = True

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if not self.committed:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()
