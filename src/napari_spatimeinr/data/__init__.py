"""In-memory data model: :class:`Stack4D` (canonical TZYX float32 with physical metadata)."""

from .normalize import Normalization
from .stack import Stack4D

__all__ = ["Normalization", "Stack4D"]
