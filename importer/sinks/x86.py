"""The x86 call filter: a reversible transform that makes rebuilt native code delta well.

A rebuilt shared library moves its functions by a few bytes here and there, and every ``call``
(opcode ``E8`` and a 32-bit displacement from the next instruction) that crosses a moved
function changes its displacement, although its target did not change: a delta of the new
library against the old one pays for thousands of such 4-byte edits. Written as the target's
position instead (displacement + the instruction's end), the operand of a call to an unmoved
function (the PLT, the runtime's helpers, a function before the edit) is the same in both
releases. This is xz's x86 BCJ filter reduced to ``E8``: its condition too (only operands whose
top byte is 0x00 or 0xFF, i.e. displacements within +-16 MiB, the plausible ones, are converted,
into 25-bit positions sign-extended the same way, so the condition holds after the transform as
before and the inverse makes the same choices).

Scanning rule: every ``E8`` with four bytes after it starts a 5-byte unit, converted or not, and
the scan resumes after it. The bytes it skips are the only ones the transform changes, so the
inverse, scanning the transformed bytes, finds the same units (xz instead keeps a mask of recent
``E8`` bytes; a unit of five is simpler and measured the same).

Measured on the ``.so`` files that changed between consecutive manylinux x86_64 wheels (each
256 KiB leaf against the leaves :func:`importer.sinks.delta.reference_span` picks, zstd level 19
with them as a raw-content dictionary; ``/work/tmp`` prototypes, 2026-12-07), delta bytes with
the filter (positions counted from each block's start) against without:

=============================  ============  =========  ===========  ======
wheel (previous -> new)        changed .so   deltas     filtered     ratio
=============================  ============  =========  ===========  ======
pandas 3.1.0 -> 3.1.1 (Cython)  18,302,408   1,338,433    1,007,612   0.753
numpy 2.5.4 -> 2.5.5 (C)        13,886,651     486,638      413,838   0.850
grpcio 1.85.1 -> 1.85.3 (C++)   17,087,168   1,002,288      960,126   0.958
=============================  ============  =========  ===========  ======

Counting positions from the file's start instead of each block's gains under 1% more (pandas
0.747), so a delta needs no offsets. Converting ``E9`` (``jmp``) and ``0F 8x`` (``jcc``) too made
every delta larger (pandas 0.97 and 1.16 of the unfiltered deltas for the whole files): those
are jumps within a function, whose displacement a move does not change. cryptography's Rust
library (0.996) and pydantic-core's (0.978) barely change either way; the delta codec keeps
whichever of the two is smaller (:mod:`importer.sinks.delta`). A block stored whole is packed
filtered too when it looks like code (:data:`importer.sinks.packs.LOCATOR_X86`): the operands of
calls to the same function become the same bytes, which zstd finds (first wheels 2.6-7% smaller).
"""

from __future__ import annotations

import re
from typing import Final

#: A call unit: ``E8`` and the four bytes of its operand (``re.DOTALL``: any byte), found without
#: overlap from left to right, which is the scanning rule of the module docstring; group 1 is
#: the operand when its top byte makes it plausible (0x00 or 0xFF), the only ones converted.
#: ``re.sub`` with a same-length replacement: 82 MB/s on pandas' libraries (2-core Xeon), about
#: what zstd level 3 makes of them with a dictionary, in pure Python.
_UNIT: Final = re.compile(rb"\xe8(...[\x00\xff])|\xe8....", re.DOTALL)
#: What :func:`looks_like_code` counts: a unit whose operand is plausible.
_PLAUSIBLE: Final = re.compile(rb"\xe8...[\x00\xff]", re.DOTALL)
#: Plausible calls per KiB from which a block is tried with the filter. The leaves of x86-64
#: code in numpy's, pandas' and grpcio's libraries hold 2-16 per KiB; Python source, text and
#: compressed data none or about 0.03 (random bytes: 1024 * 1/256 * 2/256); a library's symbol
#: and data sections 0.03-0.9.
CALLS_PER_KIB: Final = 1.0
#: Operands are converted modulo 2**25 and sign-extended from bit 24 (xz's convention).
_MASK: Final = (1 << 25) - 1
_SIGN: Final = 1 << 24
_HIGH: Final = 0xFE000000


def looks_like_code(block: bytes) -> bool:
    """Whether ``block`` has the density of calls of x86 machine code (:data:`CALLS_PER_KIB`)."""
    return len(_PLAUSIBLE.findall(block)) * 1024 >= CALLS_PER_KIB * len(block) > 0


def encode(block: bytes) -> bytes:
    """``block`` with its plausible calls' displacements made positions (from the block's start)."""
    return _convert(block, 1)


def decode(block: bytes) -> bytes:
    """The inverse of :func:`encode`."""
    return _convert(block, -1)


def _convert(block: bytes, sign: int) -> bytes:
    def unit(match: re.Match[bytes]) -> bytes:
        operand = match.group(1)
        if operand is None:
            return match.group(0)
        # The instruction's end (start + 5) is the position its displacement counts from; the
        # output has the input's length, so a match's start is the same in both directions.
        converted = (int.from_bytes(operand, "little") + sign * (match.start() + 5)) & _MASK
        if converted & _SIGN:
            converted |= _HIGH
        return b"\xe8" + converted.to_bytes(4, "little")

    return _UNIT.sub(unit, block)
