"""Content identifiers, kept as their binary form (``bytes``) on hot paths.

A CID here is the exact byte string that goes into a dag-pb link or a CAR section:

* CIDv0: the bare sha2-256 multihash, ``12 20 <32-byte digest>`` (34 bytes), dag-pb only.
* CIDv1: ``01 <varint codec> <multihash>``; for sha2-256 that is 36 bytes for dag-pb (0x70),
  raw (0x55) and dag-cbor (0x71), since each codec fits one varint byte.

Building these by concatenation costs well under a microsecond, while a hashberg
``multiformats.CID`` object costs about 100 microseconds to make or print, so the library
builds and compares bytes and uses ``multiformats`` only at the edges: parsing what a user typed
(:func:`parse_cid`) and printing (:func:`format_cid`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Final

from multiformats import CID, multibase

from ..errors import InvalidCid
from .varint import decode_uvarint, encode_uvarint

# multicodec table entries (https://github.com/multiformats/multicodec/blob/master/table.csv)
RAW: Final = 0x55
DAG_PB: Final = 0x70
DAG_CBOR: Final = 0x71
SHA2_256: Final = 0x12
IDENTITY: Final = 0x00

_BASE32: Final = multibase.get("base32")

CODEC_NAMES: Final = {RAW: "raw", DAG_PB: "dag-pb", DAG_CBOR: "dag-cbor"}

#: multihash header of a sha2-256 digest: code 0x12, length 0x20 (32 bytes).
SHA256_PREFIX: Final = b"\x12\x20"
_V1_PREFIX: Final = {codec: b"\x01" + encode_uvarint(codec) + SHA256_PREFIX for codec in CODEC_NAMES}


def cid_v0(digest: bytes) -> bytes:
    """CIDv0 of a dag-pb block whose sha2-256 digest is ``digest``."""
    return SHA256_PREFIX + digest


def cid_v1(codec: int, digest: bytes) -> bytes:
    """CIDv1 with a sha2-256 multihash."""
    return _V1_PREFIX[codec] + digest


def make_cid(version: int, codec: int, digest: bytes) -> bytes:
    """CID of the given version; like go-cid, any codec but dag-pb forces version 1."""
    if version == 0 and codec == DAG_PB:
        return SHA256_PREFIX + digest
    return _V1_PREFIX[codec] + digest


def cid_of_block(version: int, codec: int, block: bytes) -> bytes:
    """Hash ``block`` with sha2-256 and return its CID."""
    return make_cid(version, codec, hashlib.sha256(block).digest())


def split_cid(cid: bytes) -> tuple[int, int, int, bytes]:
    """Return ``(version, codec, multihash code, digest)`` of a binary CID."""
    try:
        if len(cid) == 34 and cid[0] == SHA2_256 and cid[1] == 0x20:
            return 0, DAG_PB, SHA2_256, cid[2:]
        version, pos = decode_uvarint(cid, 0)
        if version != 1:
            raise InvalidCid(cid.hex(), f"unsupported CID version {version}")
        codec, pos = decode_uvarint(cid, pos)
        code, pos = decode_uvarint(cid, pos)
        length, pos = decode_uvarint(cid, pos)
    except InvalidCid:
        raise
    except ValueError as e:
        raise InvalidCid(cid.hex(), str(e)) from None
    digest = cid[pos:]
    if len(digest) != length:
        raise InvalidCid(cid.hex(), f"multihash says {length} digest bytes, found {len(digest)}")
    return version, codec, code, digest


def cid_codec(cid: bytes) -> int:
    """The codec of a binary CID (dag-pb for CIDv0)."""
    if len(cid) == 34 and cid[0] == SHA2_256:
        return DAG_PB
    return split_cid(cid)[1]


def block_matches(cid: bytes, block: bytes) -> bool:
    """True when ``block`` hashes to the multihash inside ``cid``."""
    _, _, code, digest = split_cid(cid)
    if code == SHA2_256:
        return hashlib.sha256(block).digest() == digest
    if code == IDENTITY:
        return block == digest
    raise InvalidCid(format_cid(cid), f"unsupported multihash code 0x{code:x}")


@lru_cache(maxsize=4096)
def format_cid(cid: bytes) -> str:
    """Print a binary CID as Kubo does: base58btc for v0, base32 lower for v1."""
    decoded = CID.decode(cid)
    if decoded.version == 1:
        decoded = decoded.set(base=_BASE32)
    return str(decoded)


def format_cid_v1(cid: bytes) -> str:
    """Print any CID in its v1 form, base32 (as ``ipfs cid base32`` does)."""
    return str(CID.decode(cid).set(version=1, base=_BASE32))


def parse_cid(text: str) -> bytes:
    """Parse a CID typed by a user (any multibase, v0 or v1) into its binary form.

    Only sha2-256 and identity multihashes and the codecs raw, dag-pb and dag-cbor are
    accepted: anything else could not be verified or decoded by this importer.
    """
    stripped = text.strip()
    if stripped.startswith("/ipfs/"):
        stripped = stripped[len("/ipfs/"):].split("/", 1)[0]
    try:
        cid = CID.decode(stripped)
    except Exception as e:  # noqa: BLE001  (multiformats raises several unrelated types)
        raise InvalidCid(text, str(e).splitlines()[0] or type(e).__name__) from None
    if cid.codec.code not in CODEC_NAMES:
        raise InvalidCid(text, f"codec {cid.codec.name} is not supported (raw, dag-pb, dag-cbor)")
    if cid.hashfun.code not in (SHA2_256, IDENTITY):
        raise InvalidCid(text, f"multihash {cid.hashfun.name} is not supported (sha2-256, identity)")
    return bytes(cid)
