"""Method registry: each method trains into a model directory and renders blocks from it."""

from __future__ import annotations

from ..core.config import CLASSICAL_METHODS
from ..core.errors import SpatimeINRError
from .base import BlockRenderer, Method

METHODS = ("spatimeinr", *CLASSICAL_METHODS)


def get_method(name: str) -> Method:
    """Return the method object for ``name`` (one of :data:`METHODS`)."""
    if name in CLASSICAL_METHODS:
        from .classical import ClassicalMethod

        return ClassicalMethod(name)
    if name == "spatimeinr":
        try:
            from .spatimeinr import SpatimeINRMethod
        except ImportError as err:  # e.g. a broken torch install
            raise SpatimeINRError(
                f"The spatimeinr method cannot be loaded ({err}): check that PyTorch is installed "
                "(pip install torch), or use --method cubic."
            ) from err
        return SpatimeINRMethod()
    raise SpatimeINRError(f"Unknown method {name!r}: choose one of {', '.join(METHODS)}.")


__all__ = ["METHODS", "BlockRenderer", "Method", "get_method"]
