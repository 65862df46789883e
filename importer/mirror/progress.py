"""A one-line progress bar on stderr, drawn only when stderr is a terminal.

The mirror has no dependency for this (tqdm is a benchmark extra): a line rewritten with ``\\r``
at most :data:`REDRAW_S` apart, thread-safe because downloads run on a pool. Not a TTY (a log
file, CI, a daemon): nothing is drawn, the sync's summary lines say what happened.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Final, TextIO

#: Seconds between redraws: fast enough to look alive, slow enough to cost nothing.
REDRAW_S: Final = 0.2
#: Width of the bar itself, in characters.
BAR_WIDTH: Final = 30


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class Progress:
    """Counts bytes and files done against totals; ``add`` from any thread."""

    def __init__(self, total_bytes: int, total_files: int, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total_bytes, self.total_files, self.label = total_bytes, total_files, label
        self.bytes = self.files = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._start = time.monotonic()

    def add(self, nbytes: int = 0, files: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.files += files
            if self.enabled and (files or time.monotonic() - self._drawn >= REDRAW_S):
                self._draw()

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        share = self.bytes / self.total_bytes if self.total_bytes > 0 else 0.0
        filled = min(BAR_WIDTH, int(share * BAR_WIDTH))
        rate = self.bytes / max(self._drawn - self._start, 1e-6)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.files}/{self.total_files} "
                          f"files, {_mb(self.bytes)} of {_mb(self.total_bytes)}, {_mb(int(rate))}/s ")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.enabled:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
