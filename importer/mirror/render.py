"""Render the index model as PEP 503 HTML and PEP 691 JSON, byte-deterministically.

Both renderings of a project page carry the same facts: each file's relative URL (its name,
percent-encoded, with ``#sha256=`` in HTML), requires-python, yanked and its reason (PEP 592),
the core metadata hash (PEP 658 ``data-dist-info-metadata`` and PEP 714 ``data-core-metadata``;
``core-metadata``/``dist-info-metadata`` in JSON), and in JSON PEP 700's ``size``,
``upload-time`` and ``versions``. The mirror's own facts (archive root CID, METADATA and plain
file CIDs) are JSON keys starting with ``_`` (reserved by PEP 691 for the index's private use)
and ``data-dpip-*`` attributes in HTML, which clients ignore.

URLs are relative to the page, so the same bytes work at ``/simple/<project>/`` of ``serve``
and of any IPFS gateway serving the tree. Output depends only on the model: keys sorted, no
timestamps of the rendering, ``\\n`` line ends.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any, Final

from .model import API_VERSION, KEY_METADATA_CID, KEY_PLAIN, KEY_ROOT, FileEntry, ProjectPage

#: PEP 691 content types, and the HTML one PEP 503 pages have always been served as.
JSON_TYPE: Final = "application/vnd.pypi.simple.v1+json"
HTML_TYPE: Final = "application/vnd.pypi.simple.v1+html"
TEXT_HTML: Final = "text/html"


def file_url(filename: str) -> str:
    """A file's URL relative to its project page (percent-encoded: ``+`` of local versions, ``!``).

    >>> file_url("pkg-1.0+local-py3-none-any.whl")
    'pkg-1.0%2Blocal-py3-none-any.whl'
    """
    return urllib.parse.quote(filename, safe="")


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _file_json(f: FileEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "filename": f.filename, "url": file_url(f.filename), "hashes": {"sha256": f.sha256},
        "yanked": (f.yanked or True) if f.yanked is not None else False,
    }
    if f.size >= 0:
        out["size"] = f.size
    if f.upload_time:
        out["upload-time"] = f.upload_time
    if f.requires_python:
        out["requires-python"] = f.requires_python
    if f.core_metadata:
        out["core-metadata"] = out["dist-info-metadata"] = {"sha256": f.core_metadata}
    if f.root:
        out[KEY_ROOT] = f.root
    if f.metadata_cid:
        out[KEY_METADATA_CID] = f.metadata_cid
    if f.plain_cid:
        out[KEY_PLAIN] = f.plain_cid
    return out


def project_json(page: ProjectPage) -> bytes:
    """The PEP 691 (API 1.1) JSON of a project page."""
    return _json_bytes({
        "meta": {"api-version": API_VERSION}, "name": page.name, "versions": list(page.versions),
        "files": [_file_json(f) for f in page.files],
    })


def _attr(name: str, value: str) -> str:
    return f' {name}="{html.escape(value, quote=True)}"'


def project_html(page: ProjectPage) -> bytes:
    """The PEP 503 HTML of a project page (with the API version meta tag of PEP 629)."""
    lines = ["<!DOCTYPE html>", "<html>", "  <head>",
             f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
             f"    <title>Links for {html.escape(page.name)}</title>", "  </head>", "  <body>",
             f"    <h1>Links for {html.escape(page.name)}</h1>"]
    for f in page.files:
        attrs = _attr("href", f"{file_url(f.filename)}#sha256={f.sha256}")
        if f.requires_python:
            attrs += _attr("data-requires-python", f.requires_python)
        if f.core_metadata:
            attrs += _attr("data-dist-info-metadata", f"sha256={f.core_metadata}")
            attrs += _attr("data-core-metadata", f"sha256={f.core_metadata}")
        if f.yanked is not None:
            attrs += _attr("data-yanked", f.yanked)
        if f.root:
            attrs += _attr("data-dpip-root", f.root)
        lines.append(f"    <a{attrs}>{html.escape(f.filename)}</a><br />")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode("utf-8")


def root_json(projects: Sequence[str]) -> bytes:
    """The PEP 691 root listing: every project, sorted."""
    return _json_bytes({"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in sorted(projects)]})


def root_html(projects: Sequence[str]) -> bytes:
    """The PEP 503 root listing: one anchor per project, ``<name>/``."""
    lines = ["<!DOCTYPE html>", "<html>", "  <head>",
             f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
             "    <title>Simple index</title>", "  </head>", "  <body>"]
    lines += [f'    <a href="{urllib.parse.quote(p)}/">{html.escape(p)}</a><br />' for p in sorted(projects)]
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode("utf-8")
