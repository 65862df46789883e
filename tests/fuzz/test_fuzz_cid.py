"""Fuzz the CID parsers: text a user types and binary CIDs from blocks. Text parses to a CID that
prints and parses back the same, or fails with one InvalidCid line; binary CIDs split or fail
with InvalidCid, and always print (as ``0x<hex>`` when they are not a CID)."""

from __future__ import annotations

from hypothesis import given

from importer.dag.cid import format_cid, parse_cid, split_cid
from importer.errors import InvalidCid

from .harness import FUZZ, inputs


@FUZZ
@given(data=inputs("cid"))
def test_cid_text_parses_and_round_trips_or_fails_with_one_line(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        cid = parse_cid(text)
    except InvalidCid as e:
        assert "\n" not in e.reason
        return
    assert parse_cid(format_cid(cid)) == cid


@FUZZ
@given(data=inputs("cid"))
def test_binary_cids_split_or_fail_with_invalid_cid_and_always_print(data: bytes) -> None:
    shown = format_cid(data)
    try:
        version, _, _, digest = split_cid(data)
    except InvalidCid:
        assert shown == "0x" + data.hex()
        return
    assert version in (0, 1) and data.endswith(digest)
    assert not shown.startswith("0x")
