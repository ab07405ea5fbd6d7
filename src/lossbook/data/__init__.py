"""Data: procedural images, the offline image corpus, patch samplers and degradations."""

from .procedural import ShiftedEdges, step_edge

__all__ = ["ShiftedEdges", "step_edge"]
