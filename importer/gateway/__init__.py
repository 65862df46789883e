"""A trustless HTTP gateway of our own over the embedded store (``dpip-import serve-blocks``).

:mod:`importer.gateway.trustless` decides every answer (server-independent, reusable by the
mirror's pip-facing server); :mod:`importer.gateway.server` serves it with the standard library.
"""

from typing import Final

from .trustless import Response, TrustlessGateway

DEFAULT_HOST: Final = "127.0.0.1"
#: Default port: 8080 is Kubo's gateway port (and so often taken by a local Kubo); 8081 is next to it.
DEFAULT_PORT: Final = 8081

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Response", "TrustlessGateway"]
