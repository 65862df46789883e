"""Fuzz the CAR reader (v1, and the v1 payload of a v2): any bytes read as verified blocks or fail
with one InvalidCar line, never another exception, and never allocate what the file does not hold."""

from __future__ import annotations

import os
import tempfile

from hypothesis import example, given

from importer.dag.cid import block_matches
from importer.errors import InvalidCar
from importer.sinks.car import CARV2_PRAGMA, CarReader

from .harness import FUZZ, inputs

#: The issue's MemoryError: a CARv2 whose data offset is near 2**62 (a regression example).
HUGE_OFFSET = CARV2_PRAGMA + bytes(16) + (1 << 62).to_bytes(8, "little") + bytes(16) + b"\x11"


def read_all(data: bytes) -> None:
    fd, path = tempfile.mkstemp(suffix=".car")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with CarReader(path) as reader:
            assert reader.version in (1, 2)
            for cid, block in reader:
                assert block_matches(cid, block)
    finally:
        os.unlink(path)


@FUZZ
@given(data=inputs("car"))
@example(data=HUGE_OFFSET)
def test_car_reader_yields_verified_blocks_or_one_invalid_car_line(data: bytes) -> None:
    try:
        read_all(data)
    except InvalidCar as e:
        assert "\n" not in str(e) and e.offset >= 0
