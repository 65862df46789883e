"""The fuzzing harness: seed corpora, byte mutations and the example budget every parser target shares.

A target is an ordinary hypothesis test over :func:`inputs`, decorated with :data:`FUZZ`::

    @FUZZ
    @given(data=inputs("car"))
    def test_car_reader_fails_only_with_importer_errors(data: bytes) -> None: ...

:func:`inputs` draws a seed (real and hand-made inputs of that parser, each small) and applies a few random edits to it (flip, overwrite, insert,
delete, duplicate, truncate), or, less often, draws raw bytes. The budget is
``$DPIP_FUZZ_EXAMPLES`` examples per target: short in ``make test``, long in ``make fuzz``.
Every crash found becomes a regression test (an ``@example`` or a test of its own).

Seeds that are text or single blocks (DAG-CBOR, CIDs, dag-pb) are committed under
``tests/fuzz/corpus/<name>/``; seeds that are archives or CARs are built when a target first
draws one (:data:`GENERATED`), from the builders in ``tests/fuzz/archive_seeds.py`` and
``tests/fuzz/seeds.py``: the repository holds no archives, and the seeds are the same bytes on
every run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CORPUS: Final = Path(__file__).parent / "corpus"
#: Examples per target in ``make test``: ~2 s for a fast parser; ``make fuzz`` raises it.
DEFAULT_EXAMPLES: Final = 150
#: Edits applied to one seed: enough to break several fields at once, few enough that most
#: mutants still get past the first checks and reach the deep parts of the parser.
MAX_EDITS: Final = 8

FUZZ: Final = settings(
    max_examples=int(os.environ.get("DPIP_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)),
    deadline=None,  # a shared 2-core machine: timing is not what a fuzz target checks
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize="DPIP_FUZZ_RANDOM" not in os.environ,  # make test is repeatable; make fuzz explores
    database=None,
)


def _generated() -> dict[str, Callable[[], dict[str, bytes]]]:
    from .archive_seeds import archive_corpora
    from .seeds import car_seeds

    return {"car": car_seeds, "zip": lambda: archive_corpora()["zip"], "tar": lambda: archive_corpora()["tar"],
            "container": lambda: archive_corpora()["container"]}


#: The corpora built at run time, by name: archives and CARs.
GENERATED: Final = ("car", "zip", "tar", "container")


@cache
def corpus(name: str) -> list[bytes]:
    """The seeds of one parser, in name order: built (:data:`GENERATED`) or committed."""
    if name in GENERATED:
        return [data for _, data in sorted(_generated()[name]().items())]
    folder = CORPUS / name
    seeds = [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()] if folder.is_dir() else []
    if not seeds:
        raise FileNotFoundError(f"no seed corpus in {folder}")
    return seeds


@st.composite
def _mutant(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, MAX_EDITS))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "dup", "truncate")))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < len(data):
            data[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255)))))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "dup":
            end = min(len(data), at + draw(st.integers(1, 256)))
            data[at:at] = data[at:end]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


def inputs(name: str) -> st.SearchStrategy[bytes]:
    """Mutants of the parser's seeds (mostly), or raw bytes."""
    def strategy() -> st.SearchStrategy[bytes]:
        seeds = tuple(corpus(name))
        return st.one_of(_mutant(seeds), _mutant(seeds), _mutant(seeds), st.binary(max_size=4096))

    return st.deferred(strategy)  # the seeds are built when a target first draws, not when it is collected
