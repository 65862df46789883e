"""Every traceback and wrong exit the issue lists, and the hunt for more: each bad input is one line
naming the CID (or file and offset) and what is wrong, and a non-zero exit."""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path
from typing import Any, Final

import pytest

from importer.cli.main import main
from importer.dag.cbor import Link, decode_dag_cbor, encode_dag_cbor
from importer.dag.cid import DAG_CBOR, RAW, cid_of_block, format_cid
from importer.sinks.car import CARV2_PRAGMA, encode_car_header, encode_section
from importer.sinks.store import BlockStore
from tests.archive_builders import ZipEntry, build_zip, python_source
from tests.conftest import RunCli

from .forge import Forge

#: A raw CID whose multihash is 0xffff, a code no table has: ``01 55 ffff03 20 <32 bytes>``.
UNKNOWN_MULTIHASH: Final = b"\x01\x55\xff\xff\x03\x20" + bytes(32)


# -- CIDs as a user types them -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "reason"), [
    ("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zz",
     "the last character 'z' does not end a base32 text (the CID is mistyped or cut short)"),
    ("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z",
     "57 base32 characters cannot encode whole bytes (a character is missing or extra)"),
    ("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4sy",  # the last two bytes cut off
     "the multihash says 32 digest bytes but 30 follow (the CID is cut short)"),
    ("bafkreigh2akiscaildcqabsyg3dfr6chu3fgp1egiymsck7e7aqa4s52zy",
     "character '1' at position 39 is not in the base32 alphabet"),
    ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd",
     "a CIDv0 (Qm...) has 46 characters, this one has 45 (a character is missing or extra)"),
    ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPb0G", "character '0' at position 45 is not in the base58btc alphabet"),
    ("xyz", "unknown multibase prefix 'x' (a CIDv1 starts with 'b', a CIDv0 with 'Qm')"),
    ("mAXASIA", ("multibase base64 (prefix 'm') is not read here: give the CID in base32 (b...) or base58btc "
                 "(Qm... or z...)")),
    ("", "empty (expected a CID such as bafy... or Qm...)"),
    ("BAFK", "3 base32 characters cannot encode whole bytes (a character is missing or extra)"),
    ("bae", "the codec is missing or malformed (the CID is cut short or mistyped)"),
    ("bagaaierasords4njcts6vs7qvdjfcvgnume4hqohf65zsfguprqphs3icwea",
     "codec json (0x200) is not supported (raw, dag-pb, dag-cbor)"),
    ("bafkrgqg5c6t3hwnsz2ivgvnzxcu5unedo6pgfxj6bswmxuqsaf4q4vfwelxqaayyo2tmcgwpcadmelwgjwqvsnk7qkrmg4qgx2bkdfzkerqdq",
     "multihash sha2-512 (0x13) is not supported (sha2-256, identity)"),
])
def test_a_mistyped_cid_names_the_cid_and_what_is_wrong(text: str, reason: str, tmp_path: Path, cli: RunCli) -> None:
    for command in ("cat", "ls", "get"):
        rc, out, err = cli(command, text, "--store", tmp_path / "none")
        assert (rc, out, err) == (1, "", f"dpip-import {command}: invalid CID {text!r}: {reason}\n")
    BlockStore(tmp_path / "store").close()
    for command in ("fetch", "verify", "inspect"):  # these also take an archive's file name or sha256
        rc, out, err = cli(command, text, "--store", tmp_path / "store")
        if all(c in "0123456789abcdefABCDEF" for c in text) and text:
            expected = f"dpip-import {command}: {text!r}: a sha256 prefix needs at least 8 hex digits\n"
        else:
            expected = (f"dpip-import {command}: {text!r}: not a CID ({reason}), nor a file name or sha256 in the "
                        "store's index\n")
        assert (rc, out, err) == (1, "", expected)


# -- the tracebacks of the issue ---------------------------------------------------------------

def test_a_car_section_with_an_unknown_multihash_code_is_one_line(tmp_path: Path, cli: RunCli) -> None:
    good = cid_of_block(1, RAW, b"x")
    car = tmp_path / "x.car"
    car.write_bytes(encode_car_header([good]) + encode_section(good, b"x") + encode_section(UNKNOWN_MULTIHASH, b"y"))
    rc, out, err = cli("import-car", "--store", tmp_path / "s", car)
    offset = len(encode_car_header([good]) + encode_section(good, b"x"))
    assert (rc, out) == (1, "")
    assert err == (f"dpip-import import-car: {car}: invalid CAR at byte {offset}: cannot verify block: invalid CID "
                   f"'{format_cid(UNKNOWN_MULTIHASH)}': unsupported multihash code 0xffff\n")


def test_a_link_with_an_unknown_multihash_code_is_one_line(tmp_path: Path, cli: RunCli) -> None:
    forge = Forge()
    from importer.dag.dagpb import PBLink
    from importer.dag.unixfs import NodeType, UnixFSData

    root = forge.dag.node([PBLink(UNKNOWN_MULTIHASH, b"odd", 1)], UnixFSData(NodeType.DIRECTORY))
    car = forge.car(tmp_path / "x.car", [root.cid])
    assert cli("import-car", "--store", tmp_path / "s", car)[0] == 0
    missing = f"block {format_cid(UNKNOWN_MULTIHASH)} not found in {tmp_path / 's'}"
    for args in (("get", format_cid(root.cid), "-o", tmp_path / "out"), ("export", format_cid(root.cid), "-o", tmp_path / "o.car"),
                 ("cat", f"{format_cid(root.cid)}/odd")):
        rc, _, err = cli(*args, "--store", tmp_path / "s")
        assert (rc, err) == (1, f"dpip-import {args[0]}: {missing}\n")
    rc, out, err = cli("ls", format_cid(root.cid), "--store", tmp_path / "s")
    assert (rc, out, err) == (0, f"{format_cid(UNKNOWN_MULTIHASH)} 1 odd\n", "")  # ls lists without reading it


def test_a_carv2_header_with_a_data_offset_near_2_to_the_62_is_one_line(tmp_path: Path, cli: RunCli) -> None:
    inner = encode_car_header([])
    fixed = bytes(16) + (1 << 62).to_bytes(8, "little") + len(inner).to_bytes(8, "little") + bytes(8)
    car = tmp_path / "v2.car"
    car.write_bytes(CARV2_PRAGMA + fixed + inner)
    rc, _, err = cli("import-car", "--store", tmp_path / "s", car)
    size = car.stat().st_size
    assert (rc, err) == (1, (f"dpip-import import-car: {car}: invalid CAR at byte 11: CARv2 payload at "
                             f"{1 << 62}+{len(inner)} lies past the end of the {size}-byte file\n"))


def test_import_car_of_a_root_in_neither_the_car_nor_the_store_exits_non_zero(tmp_path: Path, cli: RunCli) -> None:
    present, absent = cid_of_block(1, RAW, b"here"), cid_of_block(1, RAW, b"elsewhere")
    car = tmp_path / "x.car"
    car.write_bytes(encode_car_header([present, absent]) + encode_section(present, b"here"))
    rc, out, err = cli("import-car", "--store", tmp_path / "s", car)
    assert (rc, out) == (1, f"{format_cid(present)}\n{format_cid(absent)}\n")
    assert err == f"dpip-import import-car: {car}: root {format_cid(absent)} is not in the CAR or the store\n"
    car.write_bytes(encode_car_header([absent]))  # once the store holds it, the same CAR is fine
    with BlockStore(tmp_path / "s") as store:
        store.put(absent, b"elsewhere")
    assert cli("import-car", "--store", tmp_path / "s", car)[:2] == (0, f"{format_cid(absent)}\n")


@pytest.mark.parametrize(("change", "reason"), [
    ({"params": [1]}, "recipe params 0 is an integer, not a map"),
    ({"params": [[{"v": 1}]]}, "recipe params 0 is a list, not a map"),
    ({"extra": [1]}, "recipe extra 0 is an integer, not a CID link"),
    ({"skeleton_size": 2**64 - 1}, ("recipe field 'skeleton_size' value 18446744073709551615 is outside "
                                    "0..9223372036854775807")),
])
def test_recipe_fields_of_the_wrong_kind_are_one_line(change: dict[str, Any], reason: str, tmp_path: Path,
                                                      cli: RunCli) -> None:
    forge = Forge()
    honest = forge.honest_root(b"x")
    node = decode_dag_cbor(forge.dag.sink.blocks[honest])
    recipe = decode_dag_cbor(forge.dag.sink.blocks[bytes(node["recipe"])])
    bad_recipe = forge.cbor({**recipe, **change})
    root = forge.cbor({**node, "recipe": Link(bad_recipe)})
    assert cli("import-car", "--store", tmp_path / "s", forge.car(tmp_path / "x.car", [root]))[0] == 0
    for command in ("fetch", "verify", "inspect"):
        rc, _, err = cli(command, format_cid(root), "--store", tmp_path / "s", *(("-o", tmp_path / "o.zip")
                                                                                 if command == "fetch" else ()))
        assert (rc, err) == (1, f"dpip-import {command}: block {format_cid(bad_recipe)}: {reason}\n")


@pytest.mark.parametrize(("change", "reason"), [
    ({"sha256": 2**200}, None),  # not even a DAG-CBOR integer: refused by the encoder's range
    ({"sha256": 2**64 - 1}, "archive root field 'sha256' is an integer, not 32 bytes"),
    ({"name": "evil\0-1.0.zip"}, "archive root name 'evil\\x00-1.0.zip' is empty, longer than 1024 bytes or holds a NUL"),
    ({"size": True}, "archive root field 'size' is a boolean, not an integer"),
    ({"dpip": 2}, "archive schema version 2 is not supported (this dpip-import reads version 1)"),
    ({"recipe": Link(cid_of_block(1, RAW, b"r"))}, None),
])
def test_root_fields_of_the_wrong_kind_are_one_line(change: dict[str, Any], reason: str | None, tmp_path: Path,
                                                    cli: RunCli) -> None:
    forge = Forge()
    honest = forge.honest_root(b"x")
    node = decode_dag_cbor(forge.dag.sink.blocks[honest])
    try:
        root = forge.cbor({**node, **change})
    except ValueError:
        return  # an integer past 64 bits cannot be written, so cannot arrive
    if reason is None:
        reason = (f"archive root field 'recipe' links to {format_cid(bytes(change['recipe']))}, which is not a "
                  "dag-cbor block")
    assert cli("import-car", "--store", tmp_path / "s", forge.car(tmp_path / "x.car", [root]))[0] == 0
    for command in ("fetch", "verify", "inspect"):
        rc, _, err = cli(command, format_cid(root), "--store", tmp_path / "s")
        assert (rc, err) == (1, f"dpip-import {command}: block {format_cid(root)}: {reason}\n")


# -- the hunt: every field of real roots, recipes and pages, replaced by hostile values ----------

HOSTILE_VALUES: Final[tuple[Any, ...]] = (
    None, True, -1, 0, 2**63, 2**64 - 1, -(2**63), "", "x\0y", "../../x", b"", bytes(33), [], {}, [1, 2, 3],
    {"a": 1}, "a" * 5000)


def mutants(value: Any, depth: int = 0) -> list[Any]:
    """``value`` with one field (at any depth, the first 3 items of a list) replaced by each
    hostile value or removed, plus lists with an item repeated or all removed."""
    out: list[Any] = []
    if isinstance(value, dict):
        for key in value:
            out += [{**value, key: h} for h in HOSTILE_VALUES]
            out.append({k: v for k, v in value.items() if k != key})
            out += [{**value, key: sub} for sub in mutants(value[key], depth + 1)]
    elif isinstance(value, list):
        for i in range(min(len(value), 3)):
            out += [value[:i] + [h] + value[i + 1:] for h in HOSTILE_VALUES[:12]]
            out += [value[:i] + [sub] + value[i + 1:] for sub in mutants(value[i], depth + 1)]
        out += [value + value[:1], []]
    return out


def run_in_process(*argv: str | Path) -> tuple[int, str]:
    """``main(argv)``; anything but a return code (an exception escaping main) fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def test_no_mutated_root_recipe_or_page_gives_a_traceback(tmp_path: Path, cli: RunCli) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(build_zip([ZipEntry(b"demo/__init__.py", b""), ZipEntry(b"demo/core.py", python_source(1, 40)),
                                 ZipEntry(b"demo/data.txt", b"stored", method=0)]))
    store_path = tmp_path / "s"
    rc, _, err = cli("auto", "--store", store_path, wheel)
    assert rc == 0, err
    root = Forge()  # a scratch forge only for encoding: blocks go straight into the store
    with BlockStore(store_path) as store:
        root_cid = next(r.root for r in store.iter_archives())
        node = decode_dag_cbor(store.get(root_cid))
        recipe = decode_dag_cbor(store.get(bytes(node["recipe"])))
        page = decode_dag_cbor(store.get(bytes(recipe["pages"][0])))

        def put(value: Any) -> bytes:
            block = encode_dag_cbor(value)
            cid = cid_of_block(1, DAG_CBOR, block)
            store.put(cid, block)
            return cid

        cases: list[bytes] = []
        for mutant in mutants(node):
            with contextlib.suppress(ValueError, TypeError):  # not encodable: cannot arrive
                cases.append(put(mutant))
        for mutant in mutants(recipe):
            with contextlib.suppress(ValueError, TypeError):
                cases.append(put({**node, "recipe": Link(put(mutant))}))
        for mutant in mutants(page):
            with contextlib.suppress(ValueError, TypeError):
                cases.append(put({**node, "recipe": Link(put({**recipe, "pages": [Link(put(mutant))]}))}))
        store.flush()
    del root
    assert len(cases) > 500
    failures = []
    for cid, command in itertools.product(cases, ("fetch", "verify", "inspect")):
        extra = ("-o", tmp_path / "out.zip", "--force") if command == "fetch" else ()
        try:
            rc, err = run_in_process(command, format_cid(cid), "--store", store_path, *extra)
        except (Exception, SystemExit) as e:  # noqa: BLE001  (what the test looks for)
            failures.append((format_cid(cid), command, f"{type(e).__name__}: {e}"))
            continue
        if rc != 0 and (rc != 1 or err.count("\n") != 1):
            failures.append((format_cid(cid), command, err))
    assert failures == []
