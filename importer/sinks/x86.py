"""The x86 filter: a reversible transform that makes rebuilt native code delta and compress well.

A rebuilt shared library moves its functions and data by a few bytes here and there, and every
instruction that addresses code or data relative to itself changes its 32-bit displacement when
it or its target moves, although the target did not change: a delta of the new library against
the old one pays for thousands of such 4-byte edits. Written as the target's position instead
(the displacement plus the position where it is counted from, the end of the displacement), an
operand whose target did not move (the PLT, the GOT, a function or string before the edit) is
the same bytes in both releases, and the same bytes again wherever the same target is used.

The units converted, x86-64 encodings with a 32-bit displacement at their end. Form 1:

* ``E8 d32``: ``call rel32`` (xz's x86 BCJ filter converts these alone);
* ``[REX] 8B|8D|89 modrm d32`` with ``modrm`` RIP-relative (mod 00, r/m 101): ``mov`` from,
  ``lea`` of and ``mov`` to a RIP-relative address (strings, globals, the GOT);
* ``FF 15|25 d32``: ``call``/``jmp`` through a RIP-relative pointer (the GOT, with ``-fno-plt``).

Form 2 (:data:`FORMS`; new writes, :data:`FORM`): those, then

* ``[66|F2|F3] [REX] 0F op modrm d32`` with ``op`` one of 10 11 28 29 2E 2F 54 57 58 59 5C 5E 6F
  7F B6 B7 BE BF and ``modrm`` RIP-relative: SSE loads, stores and arithmetic of constants
  (``movsd``, ``movaps``, ``ucomisd``, ``xorps``, ``addsd``, ``movdqa``...), ``movzx``, ``movsx``;
* ``[REX] op modrm d32`` with ``op`` one of 03 2B 33 39 3B 63 85 87 and ``modrm`` RIP-relative:
  ``add``, ``sub``, ``xor``, ``cmp``, ``movsxd``, ``test``, ``xchg`` with a global.

None of them has an immediate after the displacement, so the displacement counts from its own
end. Form 1 never changes: stores of schema 10 hold it, and a delta or a packed block says its
form (:data:`importer.sinks.delta.X86_FILTERED_2`, :data:`importer.sinks.packs.LOCATOR_X86_2`).

As in xz, only operands whose top byte is 0x00 or 0xFF (displacements within +-16 MiB, the
plausible ones) are converted, into 25-bit positions sign-extended the same way, so the
condition holds after the transform as before and the inverse makes the same choices.

Scanning rule: the units are found without overlap from left to right (a regular expression's
alternatives, in the order above); a unit found is consumed whole, converted or not, and the
scan resumes after it. The transform changes only the displacements of the units it consumed,
and the inverse finds the same units because no decision of the scan depends on a displacement.
A unit found is consumed with its displacement, so no later decision reads it. A position where
no unit starts is decided by the fixed bytes (prefix, REX, opcode, modrm) of the units that
could start there, which could reach into the displacement of the next unit found only if that unit started inside them; a
unit's first byte (E8, FF, a prefix, a REX, 0F, a ``mov`` or ALU opcode) appears among another
unit's fixed bytes only as the REX after a prefix, the 0F after a prefix or REX, or the opcode
after a REX (no modrm, second byte of ``FF`` or SSE opcode starts a unit), and from there on the
candidate asks for the fixed bytes of a unit that starts with that byte: if the next unit is
that one the candidate is a unit too (so a unit started at the earlier position), and otherwise
it fails at a fixed byte before the next unit's displacement. (xz keeps a mask of recent ``E8``
bytes instead; consuming the unit is simpler.)

Measured on the ``.so`` files that changed between consecutive manylinux x86_64 wheels (at least
100 KB), each file's new version as ``zstd -19 --long`` against its old one as a raw-content
dictionary (``/work/tmp`` prototypes, 2026-12-07, for the first three columns; the last two
``python -m bench.perf_x86`` at 0982e38, 2026-12-08), delta bytes against the unfiltered delta:

=================================  ===========  ========  =================  ==========  ==========
wheel (previous -> new)             unfiltered  ``E8``    ``E8`` + RIP + FF  form 1      form 2
=================================  ===========  ========  =================  ==========  ==========
pandas 3.1.0 -> 3.1.1 (Cython)       1,306,740    0.741         0.518          0.514       0.480
numpy 2.5.4 -> 2.5.5 (C)               483,054    0.847         0.748          0.739       0.717
grpcio 1.85.1 -> 1.85.3 (C++)        1,045,859    0.943         0.893          0.890       0.886
cryptography 50.0.1 -> 50.0.2 (Rust) 1,253,952    1.001         0.885          0.885       0.883
=================================  ===========  ========  =================  ==========  ==========

"E8 + RIP + FF" took only ``48``/``4C`` REX prefixes and ``8B``/``8D``; form 1 takes any REX
prefix or none and ``89`` too. The store's own deltas (each 256 KiB leaf at level 3 against its
references, the smaller of plain and filtered, :func:`importer.sinks.delta.encode_payload`) in
form 2 took 0.945 (pandas), 0.977 (numpy), 0.996 (grpcio) and 0.999 (cryptography) of their
bytes in form 1; the new libraries compressed alone at level 19, 0.988, 0.994, 0.997 and 0.999.
In the same run the compiled kernel filtered the new libraries at 569 MB/s in form 1 and 402 in
form 2 (pandas), 633 and 415 (numpy), 483 and 338 (grpcio), 622 and 439 (cryptography): form 2
at 0.66-0.71 of form 1's speed (CPU time, best of 15; the inverse within 2% of it). The new
files compressed alone, without a reference, shrink too (pandas 0.92 of ``E8`` alone with form
1's units). The store's deltas are per 256 KiB leaf (:mod:`importer.sinks.delta`), each block filtered with
positions counted from its own start: with ``E8`` alone that cost under 1% against positions
from the file's start (pandas 0.753 against 0.747), so a delta needs no offsets. Converting
``E9`` (``jmp``) and ``0F 8x`` (``jcc``) made every delta larger (pandas 0.97 and 1.16 of the
unfiltered deltas): those jump within a function, whose displacement a move does not change.
The delta codec keeps whichever of the filtered and the plain delta is smaller; a block stored
whole is packed filtered when it looks like code (:data:`importer.sinks.packs.LOCATOR_X86`).
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
from collections.abc import Callable
from functools import cache
from typing import Final, cast

KERNEL_MODULE: Final = "importer.sinks._x86"
WARNING: Final = (
    "dpip-importer: warning: the compiled x86 filter ({module}) is not built ({error}); "
    "stores fall back to a slow reference. "
    "Rebuild it with `pip install -e .` or `python setup.py build_ext --inplace`.\n"
)
#: The filter's forms: 1, the units of form 1 in the module docstring (the stores of schema 10
#: hold it, so it never changes), and 2, those and the units of form 2 after them.
FORMS: Final = (1, 2)
#: The form new deltas and packed blocks are written in.
FORM: Final = 2
_RIP_MODRM: Final = rb"[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]"
_REX: Final = rb"[\x40-\x4f]?"
#: The bytes of each unit before its displacement, in the module docstring's order.
_FORM_1_UNITS: Final = (rb"\xe8", _REX + rb"[\x89\x8b\x8d]" + _RIP_MODRM, rb"\xff[\x15\x25]")
_FORM_2_UNITS: Final = _FORM_1_UNITS + (
    rb"[\x66\xf2\xf3]?" + _REX + rb"\x0f[\x10\x11\x28\x29\x2e\x2f\x54\x57\x58\x59\x5c\x5e\x6f\x7f\xb6\xb7\xbe\xbf]"
    + _RIP_MODRM,
    _REX + rb"[\x03\x2b\x33\x39\x3b\x63\x85\x87]" + _RIP_MODRM)


def _scanner(units: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The units as one regular expression, alternatives in their order: group ``k`` is the ``k``-th
    unit's displacement when its top byte makes it plausible; a unit whose operand is not
    plausible is matched by the same alternative without the condition (no group then) and so
    consumed as well. ``re.DOTALL``: ``.`` is any byte."""
    return re.compile(b"|".join(rb"(?:%s)(...[\x00\xff])|(?:%s)...." % (unit, unit) for unit in units), re.DOTALL)


#: The units of each form as :func:`_scanner`. With ``re.sub`` this is :func:`reference_convert`:
#: 12-15 MB/s in form 1 and 7 MB/s in form 2 on pandas' libraries (2-core Xeon; REX prefixes and
#: ``mov`` opcodes start a match attempt at one byte in ten), so reads and writes use the same
#: loop compiled (``_x86.c``).
_UNITS: Final = {1: _scanner(_FORM_1_UNITS), 2: _scanner(_FORM_2_UNITS)}
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


def encode(block: bytes, form: int = FORM) -> bytes:
    """``block`` with the plausible displacements of the units of ``form`` (:data:`FORMS`) made
    positions (from the block's start)."""
    with _RECENT_LOCK:
        known = _RECENT.get((form, block))
    return known if known is not None else _remember(form, block, _kernel()(block, 1, form))


def decode(block: bytes, form: int) -> bytes:
    """The inverse of :func:`encode` in ``form``."""
    decoded = _kernel()(block, -1, form)
    _remember(form, decoded, block)
    return decoded


#: Blocks filtered or unfiltered last, with their filtered form: a delta's references are read
#: (unfiltered, to check them against their CIDs) and then filtered again as its dictionary, and
#: the leaves of one file share references; remembering the pair spares the second conversion.
#: A cold read of pandas' filtered blocks converted 12 blocks a read (``cProfile``, 100 reads:
#: the kernel 0.70 of 1.54 s). At most 12 pairs of 256 KiB leaves, 6 MiB; keyed by form too
#: (a store may hold both forms, and a block's filtered bytes differ between them).
RECENT_BLOCKS: Final = 12
_RECENT: dict[tuple[int, bytes], bytes] = {}
_RECENT_LOCK: Final = threading.Lock()


def _remember(form: int, block: bytes, filtered: bytes) -> bytes:
    with _RECENT_LOCK:
        _RECENT.pop((form, block), None)
        _RECENT[form, block] = filtered
        while len(_RECENT) > RECENT_BLOCKS:
            del _RECENT[next(iter(_RECENT))]
    return filtered


@cache
def _kernel() -> Callable[[bytes, int, int], bytes]:
    """The compiled loop (``_x86.c``), or :func:`reference_convert` after one warning on stderr."""
    try:
        compiled = importlib.import_module(KERNEL_MODULE)
    except ImportError as exc:
        sys.stderr.write(WARNING.format(module=KERNEL_MODULE, error=exc))
        return reference_convert
    return cast(Callable[[bytes, int, int], bytes], compiled.convert)


def reference_convert(block: bytes, sign: int, form: int) -> bytes:
    """The transform (``sign`` 1) or its inverse (-1) in ``form`` as a regular expression: the
    definition the compiled kernel must equal, at about 12 MB/s."""
    units = _UNITS.get(form)
    if units is None:
        raise ValueError(f"unknown x86 filter form {form}")

    def unit(match: re.Match[bytes]) -> bytes:
        group = match.lastindex
        if group is None:
            return match.group(0)
        # The displacement counts from its own end (the instruction's end, for these encodings);
        # the output has the input's length, so a match's place is the same in both directions.
        start, end = match.span(group)
        converted = (int.from_bytes(match.group(group), "little") + sign * end) & _MASK
        if converted & _SIGN:
            converted |= _HIGH
        return match.group(0)[:start - match.start()] + converted.to_bytes(4, "little")

    return units.sub(unit, block)
