"""The compressor backends the registry knows, by name, in the order ties are broken."""

from __future__ import annotations

from .base import Backend
from .bz2_stdlib import Bz2Backend
from .gnu_gzip import GnuGzipBackend
from .miniz_ctypes import MinizBackend
from .xz_stdlib import XzBackend
from .zlib_ng import ZlibNg22Backend, ZlibNgBackend
from .zlib_stdlib import ZlibBackend

#: Every backend by ``CompressorParams.name``; deflate ones first, most common producer first.
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (ZlibBackend(), MinizBackend(), ZlibNgBackend(), ZlibNg22Backend(), GnuGzipBackend(), Bz2Backend(),
              XzBackend())
}

__all__ = ["BACKENDS", "Backend"]
