"""``dpip-import serve``: the pip-facing server, a PEP 503/691 index whose files are rebuilt from blocks.

Modules: :mod:`.negotiate` (PEP 691 content negotiation), :mod:`.index_view` (reading an index
tree from any block source), :mod:`.cache` (on-disk cache of rebuilt files with a size cap),
:mod:`.verified` (streaming with the sha256 checked before the last byte leaves),
:mod:`.fallback` (projects the index does not hold: proxy, optionally pull through),
:mod:`.app` (the HTTP handler and server).
"""
