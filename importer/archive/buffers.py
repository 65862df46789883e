"""Where an archive import holds bytes between reading them and using them, each bounded in memory.

* :class:`Spool`: skeleton bytes, appended in order and read back once at the end (they can be as
  large as the trailing garbage of a hostile archive, so they spill to a temporary file);
* :class:`Keeper`: a copy of a member's content for its compressor search, dropped past a limit
  (the search then inflates the member again from the archive);
* :class:`Spill`: a member that may be a nested archive, held whole until its import decides.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO, Final, cast

from .streams import PIECE

#: Skeleton bytes kept in memory before spilling to a temporary file.
SKELETON_SPOOL: Final = 8 * 1024 * 1024
#: A nested candidate's content stays in memory up to this size, then spills to a temporary file.
NESTED_SPOOL: Final = 8 * 1024 * 1024


class Spool:
    """Skeleton bytes appended in order, kept in memory up to SKELETON_SPOOL, then in a temp file."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SKELETON_SPOOL)  # noqa: SIM115
        self.size = 0

    def append(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def pieces(self) -> Iterator[bytes]:
        self.file.seek(0)
        while piece := self.file.read(PIECE):
            yield piece

    def close(self) -> None:
        self.file.close()


class Keeper:
    """Keeps a copy of the pieces that pass through, up to ``limit`` bytes; past that, none."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: list[bytes] | None = []
        self.kept = 0

    def tee(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if self.pieces is not None:
                self.kept += len(piece)
                if self.kept <= self.limit:
                    self.pieces.append(piece)
                else:
                    self.pieces = None
            yield piece


class Spill:
    """A nested candidate's content: in memory up to NESTED_SPOOL, past that in an unnamed temporary file.

    In memory, the nested import reads it as bytes (no file is created: a temporary file per
    ``.json.gz`` costs more than the rest of its import on a busy machine).
    """

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._data: bytes | None = None
        self.file: IO[bytes] | None = None
        self.size = 0

    def write(self, piece: bytes) -> None:
        if self.file is None and self.size + len(piece) > NESTED_SPOOL:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
            self.file.writelines(self._pieces)
            self._pieces = []
        if self.file is not None:
            self.file.write(piece)
        else:
            self._pieces.append(piece)
        self.size += len(piece)

    def data(self) -> bytes | None:
        """The content when it is held in memory, else None."""
        if self.file is not None:
            return None
        if self._data is None:
            self._data = b"".join(self._pieces)
            self._pieces = []
        return self._data

    def open(self) -> BinaryIO:
        """The content as a file read from its start (the temporary file itself, rewound)."""
        data = self.data()
        if data is not None:
            return io.BytesIO(data)
        assert self.file is not None
        self.file.seek(0)  # flushes: a reader may pread the descriptor
        return cast(BinaryIO, self.file)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self._pieces, self._data = [], None
