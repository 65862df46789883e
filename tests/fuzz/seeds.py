"""Seeds of the CAR, DAG-CBOR (roots, recipes, pages), CID and dag-pb targets.

The CAR seeds are built at run time (:func:`car_seeds`); the DAG-CBOR, CID and dag-pb seeds are
committed under ``tests/fuzz/corpus/`` and regenerated with ``python -m tests.fuzz.seeds``. The
real seeds come from :func:`recipe_v1_car`: a wheel and a gzipped sdist with a nested
``.json.gz``, imported with ``--open-nested --car``. Its recipes are version 1, as the importer
wrote them before version 2 and still writes them when they fit in one block (the CAR is
byte-identical to the one an importer before version 2 wrote, checked when it replaced that
committed file). The hand-made seeds add what those lack: a CARv2, a recipe with paged lists
(version 2), CIDs in every text form this importer reads, and DAG-CBOR of every major type.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import cache
from pathlib import Path
from typing import Final

from importer.archive.recipe import MemberEntry, OuterStream, Recipe, write_recipe
from importer.dag.cbor import Link, decode_dag_cbor, encode_dag_cbor
from importer.dag.cid import DAG_CBOR, DAG_PB, RAW, cid_codec, cid_of_block, format_cid, format_cid_v1
from importer.dag.multibase import encode_base32, encode_base58
from importer.sinks.base import MemorySink
from importer.sinks.car import CARV2_PRAGMA, CarReader, encode_car_header, encode_section
from tests.archive_builders import TarMember, ZipEntry, build_zip, gzip_python, python_source, tar_bytes

HERE: Final = Path(__file__).parent
CORPUS: Final = HERE / "corpus"
#: The archives in :func:`recipe_v1_car` and their sha256 (what ``fetch`` of its roots must give).
V1_ARCHIVES: Final = {
    "oldfmt-1.0-py3-none-any.whl": "f2b8e3454c1ab4624a6e9ef8362e2de79b660a225bdb69985efb18698a0566c2",
    "oldfmt-1.0.tar.gz": "4da31ee25d8203770de289d08f26beab14b4678bf3cc63d3e4a9013f363b4c41",
}


def v1_archives() -> dict[str, bytes]:
    """A wheel of three members and an sdist with a nested gzip member, by file name."""
    wheel = build_zip([ZipEntry(b"oldfmt/__init__.py", b""), ZipEntry(b"oldfmt/core.py", python_source(7, 60)),
                       ZipEntry(b"oldfmt-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n", method=0)])
    sdist = gzip_python(tar_bytes([
        TarMember("oldfmt-1.0", kind=tarfile.DIRTYPE), TarMember("oldfmt-1.0/core.py", python_source(8, 40)),
        TarMember("oldfmt-1.0/data.json.gz", gzip_python(b'{"a": 1}\n' * 50))]))
    return {"oldfmt-1.0-py3-none-any.whl": wheel, "oldfmt-1.0.tar.gz": sdist}


@cache
def recipe_v1_car() -> bytes:
    """The CAR ``dpip-import auto --open-nested --no-store --car`` writes of :func:`v1_archives`."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, data in v1_archives().items():
            (Path(folder) / name).write_bytes(data)
            paths.append(str(Path(folder) / name))
        car = Path(folder) / "v1.car"
        subprocess.run([sys.executable, "-m", "importer", "auto", "--open-nested", "--no-store", "--car", str(car),
                        *paths], check=True, capture_output=True)
        return car.read_bytes()


def real_blocks() -> tuple[tuple[bytes, ...], list[tuple[bytes, bytes]]]:
    """The roots and the blocks of :func:`recipe_v1_car`."""
    with CarReader.from_stream(io.BufferedReader(io.BytesIO(recipe_v1_car())), "recipe-v1.car") as reader:
        return reader.roots, list(reader)


def car_seeds() -> dict[str, bytes]:
    """The CAR reader's seeds: the real CAR, the same as a CARv2, one raw block, no roots."""
    v1 = recipe_v1_car()
    small = cid_of_block(1, RAW, b"hello")
    return {
        "recipe-v1.car": v1,
        "recipe-v1-as-v2.car": carv2(v1),
        "one-raw-block.car": encode_car_header([small]) + encode_section(small, b"hello"),
        "no-roots.car": encode_car_header([]),
    }


def carv2(v1: bytes) -> bytes:
    """A CARv2 around a CARv1 payload: pragma, characteristics, offsets, 4 bytes of padding."""
    offset = len(CARV2_PRAGMA) + 40 + 4
    fixed = bytes(16) + offset.to_bytes(8, "little") + len(v1).to_bytes(8, "little") + bytes(8)
    return CARV2_PRAGMA + fixed + bytes(4) + v1


def paged_recipe() -> bytes:
    """A version 2 recipe node: ``outer`` long enough to be paged."""
    sink = MemorySink()
    skeleton = cid_of_block(1, RAW, b"skeleton")
    outer: list[int | OuterStream | None] = [OuterStream(0, -1, i * 10, 10) if i % 2 else 7 for i in range(12_000)]
    recipe = Recipe("tar", tuple(outer), skeleton, 42_000, ({"v": 1, "name": "zlib", "family": "madler-zlib",
                                                             "level": 9, "wbits": -15, "mem_level": 8},),
                    (), (MemberEntry(0, "a.py", 0),), 0)
    return sink.blocks[write_recipe(recipe, sink)]


def hand_made_cbor() -> dict[str, bytes]:
    link = Link(cid_of_block(1, DAG_CBOR, b"x"))
    return {
        "every-type.cbor": encode_dag_cbor({"a": [None, True, False, 0, -1, 2**64 - 1, -(2**64)], "bb": b"\x00\xff",
                                            "ccc": "text é", "link": link, "map": {"": {}, "z": []}}),
        "car-header.cbor": encode_dag_cbor({"roots": [link], "version": 1}),
        "float.cbor": bytes.fromhex("a1616cfb3ff8000000000000"),  # {"l": 1.5}
        "paged-recipe.cbor": paged_recipe(),
    }


def cid_texts(cids: list[bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for cid in cids[:3]:
        v1 = format_cid_v1(cid)
        out[f"{v1[:12]}-b.txt"] = v1.encode()
        out[f"{v1[:12]}-B.txt"] = ("B" + v1[1:].upper()).encode()
        out[f"{v1[:12]}-z.txt"] = ("z" + encode_base58(bytes.fromhex(_hex(v1)))).encode()
        out[f"{v1[:12]}-f.txt"] = ("f" + _hex(v1)).encode()
        out[f"{v1[:12]}-ipfs.txt"] = f"/ipfs/{v1}/some/path".encode()
        if cid_codec(cid) == DAG_PB and len(cid) == 34:
            out[f"{v1[:12]}-Qm.txt"] = format_cid(cid).encode()
    identity = b"\x01\x55\x00\x05hello"
    out["identity-b.txt"] = ("b" + encode_base32(identity)).encode()
    return out


def _hex(v1_text: str) -> str:
    from importer.dag.multibase import decode_base32

    return decode_base32(v1_text[1:]).hex()


def write(folder: str, seeds: dict[str, bytes]) -> None:
    target = CORPUS / folder
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name, data in seeds.items():
        (target / name).write_bytes(data)


def main() -> None:
    roots, blocks = real_blocks()
    cbor: dict[str, bytes] = {}
    for cid, block in blocks:
        if cid_codec(cid) != DAG_CBOR:
            continue
        value = decode_dag_cbor(block)
        kind = "root" if isinstance(value, dict) and "dpip" in value else "recipe" if isinstance(value, dict) else "page"
        cbor[f"{kind}-{hashlib.sha256(block).hexdigest()[:8]}.cbor"] = block
    cbor.update(hand_made_cbor())
    write("dagcbor", cbor)
    write("cid", cid_texts([c for c, _ in blocks]) | {f"binary-{i}.bin": c for i, c in enumerate(roots)})
    pb = {f"real-{hashlib.sha256(b).hexdigest()[:8]}.bin": b for c, b in blocks
          if cid_codec(c) == DAG_PB and len(b) < 1024}
    for name, data in pb.items():
        (CORPUS / "dagpb" / name).write_bytes(data)


if __name__ == "__main__":
    main()
