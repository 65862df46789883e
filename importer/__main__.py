"""``python -m importer`` runs the ``dpip-import`` command line."""

from .cli.main import run

run()
