"""GNU ``gzip`` (the binary) as a raw-deflate backend: what old sdists made with ``tar czf`` contain.

GNU gzip has its own deflate (not zlib's) and zlib does not reproduce it. We run
``gzip -c -n -LEVEL``: with ``-n`` and input on stdin the header is exactly 10 bytes (magic 1f 8b,
method 8, flags 0, mtime 0, XFL, OS) and the trailer 8 bytes (CRC-32, ISIZE); both are stripped so
the output is the deflate body the archive's own header and trailer surround. A thread feeds stdin
while we read stdout, so neither pipe can fill up and block the other.
"""

from __future__ import annotations

import fcntl
import functools
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator

from ..errors import CompressorUnavailable
from ..params import CompressorParams

#: GNU gzip's deflate.c has kept its match parameters (configuration_table) since 1.2.4 (1993).
FAMILY = "gnu-gzip-1"

#: gzip header without FNAME/FEXTRA/FCOMMENT (10 bytes, RFC 1952 2.3) and trailer (CRC32 + ISIZE).
_HEADER_SIZE, _TRAILER_SIZE = 10, 8

#: Read size from gzip's stdout (64 KiB = 2 ** 16).
_READ_SIZE = 1 << 16

#: Inputs up to this size are written to a temporary file for gzip to read, without a feeder
#: thread; larger ones are streamed through a pipe so a mismatch stops the work early.
SMALL_INPUT = 4 * 1024 * 1024
#: Inputs up to this size go through a pipe filled before gzip starts: 1 MiB is Linux's default
#: /proc/sys/fs/pipe-max-size, the most an unprivileged process may ask F_SETPIPE_SZ for.
PIPE_INPUT = 1024 * 1024

#: gzip's default level is 6; -9 is what `tar czf` with GZIP=-9 and most release scripts used.
LEVEL_ORDER = (9, 6, 1, 2, 3, 4, 5, 7, 8)


def _binary() -> str:
    path = _which_gzip()
    if path is None:
        raise CompressorUnavailable("gnu-gzip", "no gzip binary on PATH (install the Debian package gzip)")
    return path


@functools.cache
def _which_gzip() -> str | None:
    """Looked up once: a PATH search stats every directory (~0.2 ms), once per attempt otherwise."""
    return shutil.which("gzip")


class GnuGzipBackend:
    """``gzip -c -n -LEVEL`` in a subprocess, header and trailer stripped."""

    name = "gnu-gzip"
    kind = "deflate"
    family = FAMILY
    feed_dependent = False
    spawns_process = True

    def probe(self) -> str:
        result = subprocess.run([_binary(), "--version"], capture_output=True, check=False)
        first = result.stdout.decode("utf-8", "replace").splitlines()[:1]
        if result.returncode != 0 or not first or not first[0].startswith("gzip "):
            raise CompressorUnavailable("gnu-gzip", f"'gzip --version' did not name GNU gzip: {first!r}")
        return first[0]

    def settings(self) -> tuple[CompressorParams, ...]:
        return tuple(CompressorParams(self.name, self.family, level) for level in LEVEL_ORDER)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        return self.settings()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        command = [_binary(), "-c", "-n", f"-{params.level}"]
        it = iter(pieces)
        held: list[bytes] = []
        size = 0
        for piece in it:
            held.append(piece)
            size += len(piece)
            if size > SMALL_INPUT:
                break
        else:
            # All of a small input is here: gzip reads it from a pipe that already holds it (or
            # a temporary file), so no feeder thread is started (its start and GIL hand-offs
            # cost more than gzip's own work on a ~100 KB .json.gz in a busy process).
            source = _filled_pipe(held, size)
            if source is None:
                with tempfile.TemporaryFile() as spool:
                    spool.writelines(held)
                    spool.seek(0)  # flushes: gzip reads the descriptor from its start
                    proc = subprocess.Popen(command, stdin=spool, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            else:
                try:
                    proc = subprocess.Popen(command, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                finally:
                    os.close(source)
            yield from _read_body(proc, None, [])
            return
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        stdin = proc.stdin
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                for piece in itertools.chain(held, it):
                    stdin.write(piece)
            except BrokenPipeError:
                pass  # we stopped reading (mismatch) and killed gzip
            except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                failure.append(exc)
            finally:
                try:
                    stdin.close()
                except BrokenPipeError:
                    pass

        feeder = threading.Thread(target=feed, name="gzip-feeder", daemon=True)
        feeder.start()
        yield from _read_body(proc, feeder, failure)


def _filled_pipe(pieces: list[bytes], size: int) -> int | None:
    """The read end of a pipe holding all of ``pieces`` (write end closed), or None when the pipe
    cannot be made that large (no F_SETPIPE_SZ, over the system's limits): a write never blocks."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None or size > PIPE_INPUT:
        return None
    read_end, write_end = os.pipe()
    try:
        # The kernel rounds up to a power of two pages and may refuse or cap a large pipe
        # (pipe-max-size, a user's pipe-user-pages-soft): only what it grants is trusted.
        capacity = fcntl.fcntl(write_end, set_size, max(size, 4096))
        if capacity < size:
            raise OSError("pipe too small")
        view = memoryview(b"".join(pieces))
        while view:
            view = view[os.write(write_end, view):]
    except OSError:
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    return read_end


def _read_body(proc: subprocess.Popen[bytes], feeder: threading.Thread | None,
               failure: list[BaseException]) -> Iterator[bytes]:
    """gzip's output without its header and trailer; kills gzip if the caller stops early."""
    assert proc.stdout is not None
    stdout = proc.stdout
    try:
        skip, held = _HEADER_SIZE, b""
        while block := stdout.read1(_READ_SIZE):  # type: ignore[attr-defined]
            if skip:
                cut = min(skip, len(block))
                block, skip = block[cut:], skip - cut
            # Hold back the last 8 bytes seen: they may be the trailer.
            data = held + block
            held = data[-_TRAILER_SIZE:]
            if body := data[:-_TRAILER_SIZE]:
                yield body
        if feeder is not None:
            feeder.join()
        if failure:
            raise failure[0]
        if proc.wait() != 0 or len(held) != _TRAILER_SIZE:
            raise CompressorUnavailable("gnu-gzip", f"gzip exited with status {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout.close()
        proc.wait()
        if feeder is not None:
            feeder.join()
