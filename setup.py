"""Build hook for the compiled chunking kernel; all metadata lives in pyproject.toml."""

from setuptools import setup

setup()
