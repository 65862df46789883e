"""The ``dpip-import`` command line: one module per group of subcommands, dispatched by name."""

from .main import main

__all__ = ["main"]
