"""Build hook for the compiled chunking kernel; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The rabin/buzhash/FastCDC cut-point kernel; importer.chunkers.cdc falls back to the
        # numpy reference (with a warning) when it is not built.
        Extension("importer.chunkers._cdc", ["importer/chunkers/_cdc.c"], extra_compile_args=["-O3"]),
    ]
)
