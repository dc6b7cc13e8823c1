"""Shared fixtures: tiny synthetic stacks only (tests never read ../shared)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_spatimeinr.data.stack import Stack4D


def smooth_random(shape, seed=0, sigma=1.5):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random(shape), sigma) * 1000 + 100
    return a.astype(np.float32)


@pytest.fixture
def small_stack() -> Stack4D:
    """A (6, 5, 24, 20) stack with structure on every axis and physical metadata."""
    return Stack4D(
        smooth_random((6, 5, 24, 20)),
        voxel_size=(1.0, 0.2, 0.2),
        frame_interval=30.0,
        name="tiny",
        source_axes="TZYX",
    )


def run_generator(gen):
    """Exhaust a generator and return its return value (e.g. ``motion_interpolate``'s result)."""
    try:
        while True:
            next(gen)
    except StopIteration as end:
        return end.value
