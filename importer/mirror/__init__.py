"""The mirror: sync projects from a PEP 691 index into the store, and write the store as a PEP 503/691 index tree.

Layers, each a module: :mod:`.names` (what a file name says, and the checks every name from
outside passes), :mod:`.model` and :mod:`.render` (one index model, two renderings: PEP 503
HTML and PEP 691 JSON), :mod:`.upstream` (reading an index), :mod:`.select` (bandersnatch-like
filters), :mod:`.download` (parallel, resumable, sha256-checked downloads), :mod:`.state` (the
mirror's own SQLite file beside the store), :mod:`.lock`, :mod:`.sync`, :mod:`.metadata` (core
metadata read from an archive's tree) and :mod:`.tree` (the index as a UnixFS directory DAG).
The mirror uses the block store only through its public methods.
"""
