"""Send bytes whose sha256 is checked before the last of them leaves: a wrong rebuild never arrives whole.

The response's Content-Length is sent first (the index knows the size); the body then goes out
one piece behind the hash: each piece is written only once the next one has been hashed, and the
last only after the whole digest and the size matched. On a mismatch, or any error of the block
source mid-way, the writer stops and the caller closes the connection: the client has fewer bytes
than announced, so pip (and any HTTP client) fails the download, whatever the bytes it got.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Final

#: Pieces larger than this are cut, so the one piece held back is at most this big.
PIECE: Final = 1024 * 1024


class VerificationFailed(Exception):
    """The bytes did not hash (or count) to what was expected; nothing past the previous piece was sent."""

    def __init__(self, reason: str, sent: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


def _pieces(chunks: Iterable[bytes]) -> Iterable[bytes]:
    for chunk in chunks:
        for i in range(0, len(chunk), PIECE):
            yield chunk[i:i + PIECE]


def send_verified(chunks: Iterable[bytes], sha256: str, size: int, write: Callable[[bytes], object],
                  tee: Callable[[bytes], object] | None = None) -> int:
    """Write ``chunks`` to ``write`` (and ``tee``) holding the last piece back until the sha256 and
    size match; VerificationFailed otherwise. Returns the bytes written."""
    digest = hashlib.sha256()
    seen = sent = 0
    held: bytes | None = None
    for piece in _pieces(chunks):
        if not piece:
            continue
        seen += len(piece)
        if seen > size:
            raise VerificationFailed(f"more than the {size:,d} bytes expected", sent)
        digest.update(piece)
        if held is not None:
            write(held)
            if tee is not None:
                tee(held)
            sent += len(held)
        held = piece
    if seen != size:
        raise VerificationFailed(f"{seen:,d} bytes, {size:,d} expected", sent)
    if digest.hexdigest() != sha256:
        raise VerificationFailed(f"sha256 {digest.hexdigest()}, {sha256} expected", sent)
    if held is not None:
        write(held)
        if tee is not None:
            tee(held)
        sent += len(held)
    return sent
