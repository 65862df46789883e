"""``dpip-import add --car`` writes byte for byte the CAR that @ipld/car writes for the JS importer.

The JS side (``tests/oracles/unixfs_import.mjs``) encodes the header with @ipld/car's own
DAG-CBOR encoder and writes the blocks depth-first, pre-order, each once, as ``ipfs dag export``
does; equal bytes therefore check our header encoding, section framing and block order against
an independent implementation. Each CAR is also read back by our strict reader.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from importer.cli.main import main
from importer.dag.cid import parse_cid
from importer.sinks.car import CarReader

from .oracle_data import make_flat_dir, make_mixed_tree
from .oracle_support import AddOptions, run_js

pytestmark = pytest.mark.oracle

#: (options, tree): the mixed tree under three leaf/layout settings, and a flat directory of 300
#: entries that a 1000-byte threshold turns into a HAMT with sub-shards; then a lone raw leaf
#: (the header's root is a CIDv1 raw CID), a one-chunk dag-pb file, a -w wrapper under the v1
#: profile, and a file of 4 identical chunks (one leaf block, written once).
CASES = (
    (AddOptions(), "mixed"),
    (AddOptions(cid_version=1), "mixed"),
    (AddOptions(trickle=True, chunker="size-65536"), "mixed"),
    (AddOptions(hamt_threshold=1000), "flat"),
    (AddOptions(cid_version=1), "mixed/a.txt"),
    (AddOptions(), "mixed/a.txt"),
    (AddOptions(profile="unixfs-v1-2025", wrap=True, hidden=True), "mixed"),
    (AddOptions(), "mixed/zeros.bin"),
)


@pytest.fixture(scope="module")
def js_cars(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The folder holding both trees, and one JS-written CAR per case, from one node process."""
    base = tmp_path_factory.mktemp("car-eq-js")
    make_mixed_tree(base / "mixed")
    make_flat_dir(base / "flat", [f"entry-{i:04}" for i in range(300)])
    cars = [base / f"js-{i}.car" for i in range(len(CASES))]
    run_js([options.js_job(base / tree, car=car) for (options, tree), car in zip(CASES, cars)], processes=1)
    return base, cars


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{t}-{o.id}" for o, t in CASES])
def test_add_car_bytes_eq_js_car(js_cars: tuple[Path, list[Path]], tmp_path: Path, case: int) -> None:
    base, cars = js_cars
    options, tree = CASES[case]
    ours = tmp_path / "ours.car"
    argv = ["add", "-r", "-Q", *options.cli_args(), "--car", str(ours), str(base / tree)]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(argv) == 0
    assert ours.read_bytes() == cars[case].read_bytes()
    with CarReader(cars[case]) as reader:
        assert reader.roots == (parse_cid(out.getvalue().strip()),)
        blocks = list(reader)  # every block verified against its CID
    assert len({cid for cid, _ in blocks}) == len(blocks)  # each block once
