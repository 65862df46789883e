"""The tar-crate feed (maturin and uv_build sdists): writes cut as the Rust tar crate makes them, real bodies reproduced."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import tarfile
import zlib
from pathlib import Path

import pytest

from importer.compress import ProducerHints, recompress, search_params
from importer.compress.backends import BACKENDS
from importer.compress.pieces import Replayable, iter_tar_writes
from importer.compress.search import try_params

VECTORS = json.loads((Path(__file__).parent / "vectors" / "compress_rust_sdists.json").read_text())["sdists"]
IDS = [v["sdist"].removesuffix(".tar.gz") for v in VECTORS]


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_writes_are_headers_8k_data_pieces_padding_and_the_end() -> None:
    long_name = "pkg/" + "n" * 120 + ".py"  # > 100 bytes: a GNU longname member ahead of it
    stream = _tar({"pkg/a.py": b"a" * 20_000, "pkg/empty": b"", long_name: b"x" * 512})
    writes = list(iter_tar_writes([stream[i : i + 700] for i in range(0, len(stream), 700)]))
    assert b"".join(writes) == stream
    sizes = [len(w) for w in writes]
    # a.py: header, 8192 + 8192 + 3616 data, 480 padding; empty: header; longname member: header,
    # the 127-byte name + NUL, 384 padding; its file: header, 512 data; end: 1,024, then tarfile's
    # record padding to 10,240 bytes in 1,024-byte writes.
    assert sizes[:9] == [512, 8192, 8192, 3616, 480, 512, 512, 128, 384]
    assert sizes[9:12] == [512, 512, 1024]
    assert set(sizes[12:]) == {1024} and sum(sizes) % 10240 == 0


def test_tar_writes_of_a_stream_that_is_no_tar_are_one_block_then_8k_pieces() -> None:
    data = bytes(range(256)) * 100  # 25,600 bytes whose first block has no valid checksum
    assert [len(w) for w in iter_tar_writes([data])] == [512, 8192, 8192, 8192, 512]


def _vector(vector: dict[str, str]) -> tuple[bytes, bytes]:
    tar = zlib.decompress(base64.b64decode(vector["tar_zlib_b64"]))
    assert hashlib.sha256(tar).hexdigest() == vector["tar_sha256"]
    return tar, base64.b64decode(vector["body_b64"])


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_real_rust_sdist_body_reproduced_with_gzip_header_hint(vector: dict[str, str]) -> None:
    tar, body = _vector(vector)
    hints = ProducerHints(gzip_xfl=int(vector["gzip_xfl"]), gzip_os=int(vector["gzip_os"]))
    result = search_params(body, tar, hints=hints)
    assert result.params is not None, result.reason
    assert result.params.label == vector["params"]
    # The tar pattern comes first: stock level 6, then its max_lazy 17 twin.
    assert len(result.attempts) == (1 if result.params.max_lazy == 0 else 2)
    assert b"".join(recompress(result.params, [tar[i : i + 5000] for i in range(0, len(tar), 5000)])) == body


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_real_rust_sdist_body_refused_with_plain_8k_feed_or_other_insert_limit(vector: dict[str, str]) -> None:
    tar, body = _vector(vector)
    backend = BACKENDS["zlib-ng"]
    right = next(p for p in backend.settings() if p.label == vector["params"])
    for wrong in (dataclasses.replace(right, feed="fixed", feed_size=8192),
                  dataclasses.replace(right, max_lazy=0 if right.max_lazy else 17)):
        attempt = try_params(backend, wrong, Replayable(body), Replayable(tar))
        assert attempt.reason.startswith("differs at compressed byte "), wrong.label
