"""Content identifiers, kept as their binary form (``bytes``) on hot paths.

A CID here is the exact byte string that goes into a dag-pb link or a CAR section:

* CIDv0: the bare sha2-256 multihash, ``12 20 <32-byte digest>`` (34 bytes), dag-pb only.
* CIDv1: ``01 <varint codec> <multihash>``; for sha2-256 that is 36 bytes for dag-pb (0x70),
  raw (0x55) and dag-cbor (0x71), since each codec fits one varint byte.

Building these by concatenation costs well under a microsecond, while a hashberg
``multiformats.CID`` object costs about 100 microseconds to make or print, so the library
builds, compares, parses (:func:`parse_cid`) and prints (:func:`format_cid`) bytes itself, with
:mod:`importer.dag.multibase`; ``multiformats`` only names an unknown codec in an error. Any
bytes print (as ``0x<hex>`` when they are not a CID), so an error about a hostile CID never
fails while it is being written.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Final

from ..errors import InvalidCid
from .multibase import MultibaseError, decode_base58, decode_multibase, encode_base32, encode_base58
from .varint import decode_uvarint, encode_uvarint

# multicodec table entries (https://github.com/multiformats/multicodec/blob/master/table.csv)
RAW: Final = 0x55
DAG_PB: Final = 0x70
DAG_CBOR: Final = 0x71
SHA2_256: Final = 0x12
IDENTITY: Final = 0x00

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


#: boxo ``verifcid`` maximum identity digest: an inline "hash" longer than 128 bytes is refused,
#: so a CID can never smuggle a large block in its own bytes.
MAX_IDENTITY_DIGEST: Final = 128


#: Longest CID text read: the largest CID accepted (an identity digest of 128 bytes plus four
#: varints, ~140 bytes) is 281 characters in base16, the widest encoding read; base58 decoding
#: is quadratic in the length, so a huge argument is refused before it is decoded.
MAX_CID_TEXT: Final = 512


def _codec_name(code: int) -> str:
    known = CODEC_NAMES.get(code)
    if known:
        return known
    # Imported here: the multicodec table costs ~30 ms to load, and only this error message needs it.
    from multiformats import multicodec

    try:
        return f"{multicodec.get(code=code).name} (0x{code:x})"
    except Exception:  # noqa: BLE001  (an unknown code: only its number can be shown)
        return f"0x{code:x}"


@lru_cache(maxsize=4096)
def format_cid(cid: bytes) -> str:
    """Print a binary CID as Kubo does: base58btc for v0, base32 lower for v1.

    Never raises: bytes that are not a CID (shown in an error about them) print as ``0x<hex>``.
    """
    try:
        version = split_cid(cid)[0]
    except InvalidCid:
        return "0x" + cid.hex()
    return encode_base58(cid) if version == 0 else "b" + encode_base32(cid)


def format_cid_v1(cid: bytes) -> str:
    """Print any CID in its v1 form, base32 (as ``ipfs cid base32`` does)."""
    if split_cid(cid)[0] == 0:
        cid = b"\x01" + encode_uvarint(DAG_PB) + cid
    return "b" + encode_base32(cid)


def parse_cid(text: str) -> bytes:
    """Parse a CID typed by a user (v0 ``Qm...``, or v1 in base32, base58btc, base16, base36).

    Only sha2-256 and identity multihashes and the codecs raw, dag-pb and dag-cbor are
    accepted: anything else could not be verified or decoded by this importer. Every refusal
    says what is wrong in a user's terms (a character outside the alphabet, a wrong length...).
    """
    stripped = text.strip()
    if stripped.startswith("/ipfs/"):
        stripped = stripped[len("/ipfs/"):].split("/", 1)[0]
    if not stripped:
        raise InvalidCid(text, "empty (expected a CID such as bafy... or Qm...)")
    if len(stripped) > MAX_CID_TEXT:
        raise InvalidCid(text[:60] + "...", f"{len(stripped)} characters is too long for a CID")
    try:
        if stripped.startswith("Qm"):
            # go-cid: a CIDv0 is exactly 46 base58btc characters, "Qm" for 0x12 0x20.
            if len(stripped) != 46:
                raise MultibaseError(f"a CIDv0 (Qm...) has 46 characters, this one has {len(stripped)} "
                                     "(a character is missing or extra)")
            cid = decode_base58(stripped)
        else:
            cid = decode_multibase(stripped)
    except MultibaseError as e:
        raise InvalidCid(text, e.reason) from None
    _, codec, code, digest = _split_typed(text, cid)
    if codec not in CODEC_NAMES:
        raise InvalidCid(text, f"codec {_codec_name(codec)} is not supported (raw, dag-pb, dag-cbor)")
    if code == SHA2_256:
        if len(digest) != 32:
            raise InvalidCid(text, f"a sha2-256 digest has 32 bytes, this one {len(digest)}")
    elif code == IDENTITY:
        if len(digest) > MAX_IDENTITY_DIGEST:
            raise InvalidCid(text, f"an identity digest of {len(digest)} bytes is over the "
                                   f"{MAX_IDENTITY_DIGEST}-byte limit")
    else:
        raise InvalidCid(text, f"multihash {_codec_name(code)} is not supported (sha2-256, identity)")
    return cid


def _split_typed(text: str, cid: bytes) -> tuple[int, int, int, bytes]:
    """:func:`split_cid` of decoded text, with errors that speak of the text, not of bytes."""
    if len(cid) == 34 and cid[0] == SHA2_256 and cid[1] == 0x20:
        return 0, DAG_PB, SHA2_256, cid[2:]
    fields = []
    pos = 0
    for what in ("CID version", "codec", "multihash code", "digest length"):
        try:
            value, pos = decode_uvarint(cid, pos)
        except ValueError:
            raise InvalidCid(text, f"the {what} is missing or malformed (the CID is cut short or mistyped)") from None
        if what == "CID version" and value != 1:
            raise InvalidCid(text, f"CID version {value} is not supported: this is not a CID "
                                   "(a CIDv1 starts with 'bafy' or 'bafk', a CIDv0 with 'Qm')")
        fields.append(value)
    digest = cid[pos:]
    if len(digest) != fields[3]:
        how = "cut short" if len(digest) < fields[3] else "longer than it should be"
        raise InvalidCid(text, f"the multihash says {fields[3]} digest bytes but {len(digest)} follow "
                               f"(the CID is {how})")
    return 1, fields[1], fields[2], digest
