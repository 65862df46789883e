"""The text forms of a CID: base32 (CIDv1, Kubo's default), base58btc (CIDv0), base16 and base36.

Decoding explains what is wrong in a user's terms: the character and its position that is not
in the alphabet, a length no encoded byte string can have, a last character whose unused low
bits are not zero (a mistyped or truncated CID), an unknown multibase prefix. The codecs are the
multibase table's (https://github.com/multiformats/multibase, ``multibase.csv``): RFC 4648
base32 without padding, the Bitcoin base58 alphabet, lower/upper hex, and base36 ``0-9a-z``.
"""

from __future__ import annotations

import base64
from typing import Final

BASE32_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
BASE58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BASE36_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE58_INDEX: Final = {c: i for i, c in enumerate(BASE58_ALPHABET)}

#: multibase prefix -> name of the encodings read here.
PREFIXES: Final = {
    "b": "base32", "B": "base32upper", "z": "base58btc", "f": "base16", "F": "base16upper",
    "k": "base36", "K": "base36upper",
}
#: Prefixes of the multibase table that are real encodings but not read here (Kubo prints CIDs
#: in base32 and base58btc; base64 CIDs exist but are rare): named in the error instead of
#: "unknown prefix".
OTHER_PREFIXES: Final = {
    "c": "base32pad", "C": "base32padupper", "v": "base32hex", "V": "base32hexupper",
    "t": "base32hexpad", "T": "base32hexpadupper", "h": "base32z", "Z": "base58flickr",
    "m": "base64", "M": "base64pad", "u": "base64url", "U": "base64urlpad", "0": "base2",
    "7": "base8", "9": "base10", "1": "base58btc without prefix (CIDv0 starts with Qm)",
}
#: base32 text lengths modulo 8 that no byte string encodes to: 1, 3 and 6 characters carry
#: 5, 15 and 30 bits, which leave a whole spare byte's worth (>= 5 bits) unused.
_BAD_BASE32_REMAINDERS: Final = (1, 3, 6)


class MultibaseError(ValueError):
    """Text that is not valid in its encoding; ``reason`` says why in a user's terms."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bad_character(text: str, alphabet: str, name: str, offset: int) -> MultibaseError | None:
    """The first character not in ``alphabet``, positions counted from 1 as a reader counts."""
    for i, c in enumerate(text):
        if c not in alphabet:
            shown = repr(c) if c.isprintable() else f"U+{ord(c):04X}"
            return MultibaseError(f"character {shown} at position {i + offset + 1} is not in the {name} alphabet")
    return None


def encode_base32(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (the multibase ``b`` body)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def decode_base32(text: str, offset: int = 0) -> bytes:
    """Inverse of :func:`encode_base32`; ``offset`` is where ``text`` starts, for messages."""
    error = _bad_character(text, BASE32_ALPHABET, "base32", offset)
    if error:
        raise error
    if len(text) % 8 in _BAD_BASE32_REMAINDERS:
        raise MultibaseError(f"{len(text)} base32 characters cannot encode whole bytes "
                             "(a character is missing or extra)")
    spare = len(text) * 5 % 8
    if spare and BASE32_ALPHABET.index(text[-1]) & ((1 << spare) - 1):
        raise MultibaseError(f"the last character {text[-1]!r} does not end a base32 text "
                             "(the CID is mistyped or cut short)")
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def encode_base58(data: bytes) -> str:
    """Bitcoin base58: leading zero bytes become '1', the rest a big-endian number."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(BASE58_ALPHABET[r])
    return "1" * zeros + "".join(reversed(out))


def decode_base58(text: str, offset: int = 0) -> bytes:
    error = _bad_character(text, BASE58_ALPHABET, "base58btc", offset)
    if error:
        raise error
    zeros = len(text) - len(text.lstrip("1"))
    n = 0
    for c in text:
        n = n * 58 + _BASE58_INDEX[c]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def decode_base36(text: str, offset: int = 0) -> bytes:
    """multibase base36: leading '0's are zero bytes, the rest a big-endian number."""
    error = _bad_character(text, BASE36_ALPHABET, "base36", offset)
    if error:
        raise error
    zeros = len(text) - len(text.lstrip("0"))
    n = int(text, 36) if text else 0
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def decode_base16(text: str, offset: int = 0) -> bytes:
    error = _bad_character(text, "0123456789abcdef", "base16", offset)
    if error:
        raise error
    if len(text) % 2:
        raise MultibaseError(f"{len(text)} hex digits cannot encode whole bytes (a digit is missing or extra)")
    return bytes.fromhex(text)


def decode_multibase(text: str) -> bytes:
    """The bytes of a multibase string: its first character names the encoding."""
    if not text:
        raise MultibaseError("empty text")
    prefix, body = text[0], text[1:]
    name = PREFIXES.get(prefix)
    if name is None:
        other = OTHER_PREFIXES.get(prefix)
        if other is not None:
            raise MultibaseError(f"multibase {other} (prefix {prefix!r}) is not read here: "
                                 "give the CID in base32 (b...) or base58btc (Qm... or z...)")
        shown = repr(prefix) if prefix.isprintable() else f"U+{ord(prefix):04X}"
        raise MultibaseError(f"unknown multibase prefix {shown} (a CIDv1 starts with 'b', a CIDv0 with 'Qm')")
    if not body:
        raise MultibaseError(f"nothing after the {name} prefix {prefix!r}")
    if name.endswith("upper"):
        if body != body.upper():
            raise MultibaseError(f"prefix {prefix!r} means {name}, but the text has lower-case letters")
        body = body.lower()
    if name.startswith("base32"):
        return decode_base32(body, 1)
    if name == "base58btc":
        return decode_base58(body, 1)
    if name.startswith("base16"):
        return decode_base16(body, 1)
    return decode_base36(body, 1)
