"""PEP 691 content negotiation: which representation of a Simple API page a request gets.

The server offers PEP 691 JSON, PEP 691's versioned HTML and plain ``text/html`` (PEP 503). The
``Accept`` header's entries are weighed by their ``q`` (RFC 9110: exact type before ``type/*``
before ``*/*``); the highest q wins, ties go to the order of :data:`OFFERS`. No Accept header
means ``text/html``, as PyPI answers a browser. The ``latest`` aliases PEP 691 defines are
answered with the v1 type. ``?format=TYPE`` (PEP 691's optional URL parameter) overrides the
header. Nothing acceptable: None (the server answers 406).
"""

from __future__ import annotations

from typing import Final

from ..mirror.render import HTML_TYPE, JSON_TYPE, TEXT_HTML

#: What the server can send, in order of preference when the client weighs them equally (HTML
#: first: a client that names none of them, like ``curl`` with ``*/*``, gets the legacy page).
OFFERS: Final = (TEXT_HTML, HTML_TYPE, JSON_TYPE)
#: PEP 691's "whatever the latest version is" spellings, and the type they mean here.
ALIASES: Final = {"application/vnd.pypi.simple.latest+json": JSON_TYPE,
                  "application/vnd.pypi.simple.latest+html": HTML_TYPE}


def _parse(accept: str) -> list[tuple[str, float]]:
    out = []
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        q = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        out.append((ALIASES.get(media, media), q))
    return out


def _quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    """q of ``offer``: the most specific matching range decides (RFC 9110 section 12.5.1)."""
    best_specificity, q = -1, 0.0
    major = offer.split("/")[0]
    for media, weight in ranges:
        if media == offer:
            specificity = 2
        elif media == f"{major}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, q = specificity, weight
    return q


def choose(accept: str | None, format_param: str | None = None) -> str | None:
    """The content type to answer with, or None when the client accepts none of :data:`OFFERS`.

    >>> pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
    >>> choose(pip), choose(None), choose("*/*"), choose("application/json")
    ('application/vnd.pypi.simple.v1+json', 'text/html', 'text/html', None)
    >>> choose("application/vnd.pypi.simple.latest+html"), choose("text/html", "application/vnd.pypi.simple.v1+json")
    ('application/vnd.pypi.simple.v1+html', 'application/vnd.pypi.simple.v1+json')
    """
    if format_param:
        wanted = ALIASES.get(format_param, format_param)
        return wanted if wanted in OFFERS else None
    if accept is None or not accept.strip():
        return TEXT_HTML
    ranges = _parse(accept)
    scored = [(_quality(offer, ranges), -i, offer) for i, offer in enumerate(OFFERS)]
    q, _, offer = max(scored)
    return offer if q > 0 else None
