"""Build hook for the compiled chunking kernel; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The rabin/buzhash/FastCDC cut-point kernel; importer.chunkers.cdc falls back to the
        # numpy reference (with a warning) when it is not built.
        Extension("importer.chunkers._cdc", ["importer/chunkers/_cdc.c"], extra_compile_args=["-O3"]),
        # The x86 filter of the store's deltas and packs; importer.sinks.x86 falls back to its
        # regular-expression reference (with a warning) when it is not built.
        Extension("importer.sinks._x86", ["importer/sinks/_x86.c"], extra_compile_args=["-O3"]),
    ]
)
