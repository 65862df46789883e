"""The structure-aware importer: archives as a UnixFS tree of their files plus a rebuild recipe."""
