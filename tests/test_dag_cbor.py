"""The hand-written DAG-CBOR encoder writes exactly what the reference ``dag_cbor`` writes."""

from __future__ import annotations

import random
from typing import Any

import dag_cbor
import pytest
from multiformats import CID

from importer.dag.cbor import Link, encode_dag_cbor
from importer.dag.cid import DAG_CBOR, RAW, cid_of_block

CIDS = [cid_of_block(1, DAG_CBOR, b"x"), cid_of_block(1, RAW, b"y"), cid_of_block(0, 0x70, b"z")]


def random_value(rng: random.Random, depth: int = 0) -> tuple[Any, Any]:
    """A value for our encoder and the same value for the reference (links as CID objects)."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None, None
    if kind == 1:
        b = rng.random() < 0.5
        return b, b
    if kind == 2:
        n = rng.choice([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, -1, -24, -25, -257,
                        rng.randrange(-2**40, 2**40)])
        return n, n
    if kind == 3:
        raw = rng.randbytes(rng.choice([0, 1, 23, 24, 300]))
        return raw, raw
    if kind == 4:
        text = "".join(rng.choice("abcé/π_ ") for _ in range(rng.choice([0, 3, 30])))
        return text, text
    if kind == 5:
        cid = rng.choice(CIDS)
        return Link(cid), CID.decode(cid)
    if kind in (6, 7):
        items = [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
        return [a for a, _ in items], [b for _, b in items]
    keys = {"".join(rng.choice("abkz") for _ in range(rng.randrange(1, 4))) for _ in range(rng.randrange(5))}
    pairs = {k: random_value(rng, depth + 1) for k in keys}
    return {k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()}


@pytest.mark.parametrize("seed", range(200))
def test_encoder_equals_reference_dag_cbor(seed: int) -> None:
    ours, reference = random_value(random.Random(seed))
    assert encode_dag_cbor(ours) == dag_cbor.encode(reference)


def test_floats_and_non_string_keys_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_dag_cbor(1.5)
    with pytest.raises(TypeError):
        encode_dag_cbor({1: 2})
