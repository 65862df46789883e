"""Parse ``--chunker`` strings into chunkers, with Kubo's syntax and error messages.

Follows boxo ``chunker/parse.go`` (``FromString``): ``""``/``default`` → ``size-262144``;
``size-N`` with 0 < N ≤ 2 MiB − 256; ``rabin``, ``rabin-AVG``, ``rabin-MIN-AVG-MAX``;
``buzhash``. Non-Kubo chunkers (``fastcdc-MIN-AVG-MAX``) are registered by their modules.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidChunkerSpec
from .base import CHUNK_SIZE_LIMIT, DEFAULT_BLOCK_SIZE, Chunker
from .fixed import FixedChunker

#: Kubo's messages, reused verbatim so scripts that grep for them keep working.
ERR_SIZE = "chunker size must be greater than 0"
ERR_SIZE_MAX = f"chunker parameters may not exceed the maximum chunk size of {CHUNK_SIZE_LIMIT}"

#: Extra parsers by prefix, filled by chunker modules that are not fixed-size.
_PARSERS: dict[str, Callable[[str], Chunker]] = {}


def register_chunker(prefix: str, parser: Callable[[str], Chunker]) -> None:
    """Register ``parser`` for specs equal to ``prefix`` or starting with ``prefix-``."""
    _PARSERS[prefix] = parser


def go_atoi(spec: str, text: str) -> int:
    """Go's ``strconv.Atoi`` with its error text (Kubo prints it unchanged)."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise InvalidChunkerSpec(spec, f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(1 << 63) <= value < 1 << 63:
        raise InvalidChunkerSpec(spec, f'strconv.Atoi: parsing "{text}": value out of range')
    return value


def parse_chunker(spec: str) -> Chunker:
    """Return the chunker named by ``spec`` or raise :class:`InvalidChunkerSpec`."""
    if spec in ("", "default"):
        return FixedChunker(DEFAULT_BLOCK_SIZE)
    if spec.startswith("size-"):
        # Kubo takes strings.Split(spec, "-")[1], so "size-10-x" is accepted as size-10.
        size = go_atoi(spec, spec.split("-")[1])
        if size <= 0:
            raise InvalidChunkerSpec(spec, ERR_SIZE)
        if size > CHUNK_SIZE_LIMIT:
            raise InvalidChunkerSpec(spec, ERR_SIZE_MAX)
        return FixedChunker(size)
    _load_plugins()
    for prefix, parser in _PARSERS.items():
        if spec == prefix or spec.startswith(prefix + "-") or (prefix == "rabin" and spec.startswith("rabin")):
            return parser(spec)
    raise InvalidChunkerSpec(spec, f"unrecognized chunker option: {spec}")


def _load_plugins() -> None:
    # Imported lazily so that `size-N` imports never pay for the CDC kernels.
    from . import cdc  # noqa: F401  (registers rabin, buzhash, fastcdc)
