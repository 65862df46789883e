"""Block-level codecs: CIDs, dag-pb nodes and the UnixFS Data message."""
