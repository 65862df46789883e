"""The golden self-check: each compressor must reproduce recorded outputs before we rebuild with it.

A recipe says "zlib level 6" but means "the bytes madler zlib writes at level 6". A CPython built
against zlib-ng (Fedora, CPython 3.14 on Windows) or another zlib-ng release writes other bytes
for the same settings, and rebuilding with it would produce a different archive. So before a
setting is used (to search or to rebuild), it compresses :func:`golden_corpus` and the digest
must equal the one in ``golden_table.GOLDEN``; one mismatch makes the whole backend unusable, and
:func:`require_usable` then raises :class:`CompressorUnavailable` (an error, never a wrong archive).
Each check runs once per process; :func:`check_compressors` runs them all at once.

The corpus is built from a fixed linear congruential generator so it is the same on every Python:
incompressible bytes longer than zlib's symbol buffer (so block boundaries and memLevel matter),
word text with newlines (matches of every length, line feeds), and a long zero run (RLE, max-length
matches). The table was derived once with ``python -m importer.compress.golden`` on the runtimes
named in ``golden_table.py``, whose archive outputs were matched byte for byte against real PyPI
wheels and sdists (see the module docstring there).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .backends import BACKENDS, Backend
from .backends.xz_stdlib import CHECKS as XZ_CHECKS
from .backends.xz_stdlib import DEFAULT_CHECK as XZ_DEFAULT_CHECK
from .errors import CompressorUnavailable
from .golden_table import GOLDEN
from .params import CompressorParams
from .pieces import (
    WRITESTR_FEED_LIMIT,
    iter_fixed,
    iter_lines,
    iter_record_fields,
    iter_tar_writes,
    iter_whole,
)

#: Numerical Recipes' 32-bit LCG constants (a = 1664525, c = 1013904223, m = 2 ** 32).
_LCG_A, _LCG_C, _LCG_M = 1664525, 1013904223, 1 << 32

#: 20 KiB of noise: more literals than the 16,383 symbols a memLevel-8 block holds
#: (lit_bufsize = 1 << (memLevel + 6)), so the first block ends inside it.
_NOISE_SIZE = 20 << 10
#: 160 KiB of word text: enough symbols for GNU gzip's early block cut (tried every 4,096
#: literals, deflate.c) to fire, which is what tells its output from zlib memLevel 9's; then a
#: 3,000-byte zero run (several 258-byte maximum matches).
_TEXT_SIZE, _ZERO_RUN = 160 << 10, 3000

_WORDS = (b"wheel", b"sdist", b"deflate", b"import", b"package", b"version", b"metadata", b"record",
          b"the", b"of", b"and", b"zlib", b"=", b"0.1.2", b"\n", b"def", b"return", b"    ")


@functools.cache
def golden_corpus() -> bytes:
    """The fixed ~183 KiB input every golden output is computed from (same bytes on every platform)."""
    state = 20261125  # seed: the day the table was derived
    out = bytearray()
    while len(out) < _NOISE_SIZE:
        state = (_LCG_A * state + _LCG_C) % _LCG_M
        out.append(state >> 24)
    while len(out) < _NOISE_SIZE + _TEXT_SIZE:
        state = (_LCG_A * state + _LCG_C) % _LCG_M
        out += _WORDS[(state >> 16) % len(_WORDS)]
        out += b" " if state & 0x100 else b""
    out += bytes(_ZERO_RUN)
    out += b"tail\n"
    return bytes(out)


def feed_for(backend: Backend, params: CompressorParams, pieces: Iterable[bytes]) -> Iterable[bytes]:
    """Cut ``pieces`` the way ``params`` say the original writer fed its compressor."""
    if not backend.feed_dependent or params.feed == "any":
        return pieces
    if params.feed == "fixed":
        return iter_fixed(pieces, params.feed_size)
    if params.feed == "lines":
        return iter_lines(pieces)
    if params.feed == "record":
        return iter_record_fields(pieces)
    if params.feed == "tar":
        return iter_tar_writes(pieces)
    if params.feed == "writestr":
        return iter_whole(pieces, WRITESTR_FEED_LIMIT)
    return iter_whole(pieces)


def _noise(seed: int, size: int) -> bytearray:
    state, out = seed, bytearray()
    while len(out) < size:
        state = (_LCG_A * state + _LCG_C) % _LCG_M
        out.append(state >> 24)
    return out


@functools.cache
def zlib_ng_probes() -> tuple[bytes, bytes]:
    """Two inputs telling zlib-ng settings apart where ``golden_corpus`` does not.

    * Long match: 600 noise bytes N, N[:300] again (a 258-byte match, then a 42-byte one), 1,000
      more noise bytes, then N[100:108]. A deflater that inserted the strings inside the 258-byte
      match finds N[100:108] 1,200 bytes back, one that did not finds it 1,800 bytes back (another
      distance code): ``max_lazy`` 17 against the level's 16.
    * End of input: 500 bytes of the corpus's word text (text, so the block is Huffman-coded), "wxyz"
      + 8 zero bytes, 500 more, "wxyzQ", 500 more, "wxyz". The
      last 4 bytes match both earlier copies; zlib-ng 2.3 takes the nearer (its match covers the
      input), 2.2 goes on to the farther one whose zeros also match the zeroed window past the end.

    Used only for the CPython-fed zlib-ng settings, those with max_lazy and all zlib-ng 2.2 ones
    (added later than the rest), so every other digest stays that of the corpus alone.
    """
    noise = _noise(4242, 1600)
    long_match = bytes(noise[:600] + noise[:300] + noise[600:] + noise[100:108])
    text = golden_corpus()[_NOISE_SIZE : _NOISE_SIZE + 1500]
    end = text[:500] + b"wxyz" + bytes(8) + text[500:1000] + b"wxyzQ" + text[1000:] + b"wxyz"
    return long_match, end


def golden_digest(backend: Backend, params: CompressorParams) -> str:
    """sha256 (first 32 hex digits) of the outputs for an empty input and for the corpus, length-prefixed
    (and for :func:`zlib_ng_probes` when the setting is CPython-fed or tuned zlib-ng, or zlib-ng 2.2)."""
    digest = hashlib.sha256()
    corpus = golden_corpus()
    probed = params.out_growth or params.max_lazy or params.name == "zlib-ng-2.2"
    inputs = (b"", corpus, *zlib_ng_probes()) if probed else (b"", corpus)
    for data in inputs:
        # Feed in 5,000-byte pieces: not a multiple of any feed size, so re-cutting is exercised too.
        pieces = [data[i : i + 5000] for i in range(0, len(data), 5000)]
        output = b"".join(backend.encode(params, feed_for(backend, params, pieces)))
        digest.update(len(output).to_bytes(8, "big"))
        digest.update(output)
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """Outcome of one backend's golden check."""

    name: str
    usable: bool
    #: Runtime version text (empty when the backend is missing).
    version: str
    #: Why it is unusable ("" when usable).
    reason: str
    #: Settings verified so far (the rest are verified on first use).
    checked: int


_LOCK = threading.RLock()
_STATUS: dict[str, BackendStatus] = {}
_VERIFIED: set[CompressorParams] = set()


def _verify(backend: Backend, params: CompressorParams, version: str) -> str:
    """"" if ``params`` reproduce their golden digest on this runtime, else why not."""
    expected = GOLDEN.get(params.label)
    if expected is None:
        return f"no golden output recorded for {params.label}"
    try:
        actual = golden_digest(backend, params)
    except (CompressorUnavailable, OSError, RuntimeError, ValueError) as exc:
        return f"{params.label} failed: {exc}"
    if actual != expected:
        return (f"{version}: output for {params.label} differs from the golden output "
                f"(digest {actual}, expected {expected}): not family {backend.family}")
    return ""


def backend_status(name: str) -> BackendStatus:
    """Whether a backend is usable: found, and its most common setting matches its golden output.

    Checked once per process, then cached; every other setting is checked on its first use
    (:func:`verify_setting`), so a start-up costs only the settings a run actually tries.
    """
    with _LOCK:
        status = _STATUS.get(name)
        if status is None:
            backend = BACKENDS.get(name)
            if backend is None:
                status = BackendStatus(name, False, "", "no such compressor", 0)
            else:
                try:
                    version = backend.probe()
                except CompressorUnavailable as exc:
                    status = BackendStatus(name, False, "", exc.reason, 0)
                else:
                    first = backend.settings()[0]
                    reason = _verify(backend, first, version)
                    status = BackendStatus(name, not reason, version, reason, 0 if reason else 1)
                    if not reason:
                        _VERIFIED.add(first)
            _STATUS[name] = status
        return status


def _generic(params: CompressorParams) -> CompressorParams:
    """The setting whose golden output stands for ``params``: an xz check type only changes the
    trailer's integrity field, so all check types share the default one's entry."""
    if params.name == "xz" and params.check in XZ_CHECKS:
        return dataclasses.replace(params, check=XZ_DEFAULT_CHECK)
    return params


def verify_setting(params: CompressorParams) -> BackendStatus:
    """Check ``params`` against its golden output on first use; one mismatch disables the backend."""
    params = _generic(params)
    with _LOCK:
        status = backend_status(params.name)
        if not status.usable or params in _VERIFIED:
            return status
        reason = _verify(BACKENDS[params.name], params, status.version)
        if reason:
            status = dataclasses.replace(status, usable=False, reason=reason)
        else:
            _VERIFIED.add(params)
            status = dataclasses.replace(status, checked=status.checked + 1)
        _STATUS[params.name] = status
        return status


def check_compressors() -> dict[str, BackendStatus]:
    """Check every setting of every backend against its golden output (cached); name → status."""
    for backend in BACKENDS.values():
        for params in backend.settings():
            if not verify_setting(params).usable:
                break
    return {name: backend_status(name) for name in BACKENDS}


def reset_compressor_checks() -> None:
    """Forget cached results so the next use checks again (tests, or after installing a binding)."""
    with _LOCK:
        _STATUS.clear()
        _VERIFIED.clear()


def require_usable(params: CompressorParams) -> Backend:
    """The backend for ``params`` if it and this setting pass their golden check, else raise."""
    status = backend_status(params.name)
    if not status.usable:
        raise CompressorUnavailable(params.name, status.reason)
    backend = BACKENDS[params.name]
    if params.family != backend.family:
        raise CompressorUnavailable(params.name, f"the recipe needs family {params.family!r}, "
                                                 f"this runtime is {backend.family!r}")
    if params.name == "xz" and params.check not in XZ_CHECKS:
        raise CompressorUnavailable(params.name, f"unknown xz check id {params.check}")
    generic = _generic(params)
    if generic not in backend.settings():
        raise CompressorUnavailable(params.name, f"setting {params.label} has no golden check")
    status = verify_setting(generic)
    if not status.usable:
        raise CompressorUnavailable(params.name, status.reason)
    return backend


def _derive_table() -> str:
    """Source text of ``golden_table.GOLDEN`` computed with the installed runtimes."""
    lines = []
    for backend in BACKENDS.values():
        version = backend.probe()
        lines.append(f"    # {backend.name}: {version}")
        for params in backend.settings():
            lines.append(f'    "{params.label}": "{golden_digest(backend, params)}",')
    return "GOLDEN: dict[str, str] = {\n" + "\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    print(_derive_table(), end="")
