"""The grid a flow is computed and stored on (no torch: the cost gate reads it too)."""

from __future__ import annotations

import math


def flow_grid_shape(shape: tuple[int, ...], stride: int) -> tuple[int, ...]:
    """The grid a flow is computed and stored on: y and x subsampled by ``stride``."""
    if stride <= 1:
        return tuple(shape)
    return (*shape[:-2], *(max(2, math.ceil(n / stride)) for n in shape[-2:]))


def auto_stride(shape: tuple[int, ...]) -> int:
    """Subsampling of y and x for the flow grid: 2 once both are at least 64 voxels, else 1."""
    return 2 if min(shape[-2:]) >= 64 else 1
