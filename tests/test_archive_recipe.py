"""The recipe's hand-written member-page encoder writes exactly what the generic DAG-CBOR encoder writes."""

from __future__ import annotations

import random

import dag_cbor
import pytest

from importer.archive.recipe import MemberEntry, encode_page


@pytest.mark.parametrize("count", [0, 1, 23, 24, 255, 256, 4096])
def test_encode_page_equals_dag_cbor_encode(count: int) -> None:
    rng = random.Random(count)
    sizes = [0, 5, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40]
    sources: list[str | int] = ["", "a", "é/x" * 20, "y" * 300, "z" * 70000, -1, 0, 23, 24, 300]
    entries = [MemberEntry(rng.choice(sizes), rng.choice(sources), rng.choice([-1, 0, 23, 24, -25, -300]))
               for _ in range(count)]
    expected = dag_cbor.encode([[e.skeleton_before, e.source, e.params] for e in entries])
    assert encode_page(entries) == expected
