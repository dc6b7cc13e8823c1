"""Optical flow and motion-compensated frame interpolation (numpy / scikit-image / scipy only).

Shared by the ``motion`` baseline of the evaluation and by the ``fast`` SpatimeINR engine.

Convention: for two frames ``a`` and ``b`` (2D y-x, or 3D z-y-x when Z > 1) the flow ``v`` (shape
``(ndim, *shape)``, in voxels) satisfies ``a(x) ≈ b(x + v(x))``. The frame at the fraction ``α`` of
the way from ``a`` to ``b`` is ``(1-α)·a(x - α·v(x)) + α·b(x + (1-α)·v(x))``: both frames warped to
the intermediate instant (linear interpolation, edge values repeated) and blended by distance.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.registration import optical_flow_tvl1

from ...data.normalize import Normalization

WARP_ORDER = 1


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a TZYX frame is handled in: (Z, Y, X) when Z > 1, else (Y, X) (2D flow)."""
    z, y, x = shape[-3:]
    return (z, y, x) if z > 1 else (y, x)


def tvl1_flow(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """TV-L1 flow ``v`` (shape ``(ndim, *shape)``) with ``reference(x) ≈ moving(x + v(x))``."""
    return optical_flow_tvl1(reference, moving).astype(np.float32)


def frame_flow(a: np.ndarray, b: np.ndarray, norm: Normalization) -> np.ndarray:
    """Flow between two ZYX frames (normalized by ``norm`` first), in :func:`spatial_shape`."""
    sp = spatial_shape(a.shape)
    return tvl1_flow(norm.apply(a.reshape(sp)), norm.apply(b.reshape(sp)))


def warp(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """``image(x + displacement(x))`` (linear interpolation, edge values repeated)."""
    grid = np.indices(image.shape, dtype=np.float32)
    return ndimage.map_coordinates(
        image, grid + displacement, order=WARP_ORDER, mode="nearest"
    ).astype(np.float32)


def warp_pair(
    a: np.ndarray, b: np.ndarray, flow: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` warped to the fraction ``alpha`` of the way from ``a`` to ``b``.

    ``a``, ``b``: frames of any shape whose :func:`spatial_shape` matches ``flow``; the results have
    the shape of ``a``.
    """
    sp = flow.shape[1:]
    aw = warp(a.reshape(sp), -alpha * flow)
    bw = warp(b.reshape(sp), (1.0 - alpha) * flow)
    return aw.reshape(a.shape), bw.reshape(a.shape)


def motion_pair(a: np.ndarray, b: np.ndarray, flow: np.ndarray, alpha: float) -> np.ndarray:
    """The frame at fraction ``alpha`` from ``a`` to ``b`` given the flow ``a(x) ≈ b(x + v(x))``."""
    aw, bw = warp_pair(a, b, flow, alpha)
    return ((1.0 - alpha) * aw + alpha * bw).astype(np.float32)
