"""Layouts: the shape of a file's DAG (balanced, trickle) over the leaves a chunker made."""

from .balanced import layout as balanced_layout
from .builder import DagBuilder, DagNode, FileAttributes
from .trickle import layout as trickle_layout

__all__ = ["DagBuilder", "DagNode", "FileAttributes", "balanced_layout", "trickle_layout"]
