"""dpip-importer: put Python packages into IPFS as UnixFS trees Kubo would write.

The pipeline is visible in the sub-packages: ``sources`` (archive readers) → ``chunkers`` →
``layout`` (file DAG shapes) and ``dag`` (codecs, directories) → ``sinks`` (stores, CAR, node).
"""

__version__ = "0.1.0"
