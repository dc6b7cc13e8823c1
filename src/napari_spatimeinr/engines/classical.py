"""Classical interpolation (cubic B-spline, linear, nearest) on the model-directory rails.

Equal to ``scipy.ndimage.map_coordinates(input, coords, order=k, mode="nearest")`` over the whole 4D
array, but computed chunk by chunk and separably: the tensor-product spline is linear and separable,
so an output block is the input contracted with one 1D weight matrix per axis. Each matrix row is what
scipy gives for a unit impulse at each input index (so scipy's own prefilter and boundary rules hold
exactly), restricted to the input indices that influence the row (the cubic prefilter's influence
decays as 0.268^distance; a halo of ``HALO[3]`` indices leaves < 1e-9 of the data range).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage, sparse

from ..core.config import SPLINE_ORDER
from ..core.progress import Progress

if TYPE_CHECKING:
    from ..core.config import TrainConfig
    from ..store.model_dir import ModelDir

#: input indices beyond a block's coordinate span that can still influence it, per spline order
HALO = {0: 1, 1: 1, 3: 16}


@lru_cache(maxsize=256)
def _weights_cached(n: int, coords: bytes, order: int) -> tuple[int, np.ndarray]:
    c = np.frombuffer(coords, dtype=np.float64)
    return _weights(n, c, order)


def _weights(n: int, coords: np.ndarray, order: int) -> tuple[int, np.ndarray]:
    """1D weights: returns ``(start, W)`` with output = W @ input[start:start + W.shape[1]]."""
    halo = HALO[order]
    lo = max(0, int(np.floor(coords.min())) - halo)
    hi = min(n, int(np.ceil(coords.max())) + halo + 1)
    w = np.empty((coords.size, hi - lo), dtype=np.float64)
    impulse = np.zeros(n, dtype=np.float64)
    pts = coords[np.newaxis]
    for j in range(lo, hi):
        impulse[j] = 1.0
        w[:, j - lo] = ndimage.map_coordinates(impulse, pts, order=order, mode="nearest")
        impulse[j] = 0.0
    return lo, w


def axis_weights(n: int, coords: np.ndarray, order: int) -> tuple[int, np.ndarray]:
    """Cached :func:`_weights` for a coordinate vector (blocks of one grid share rows)."""
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    return _weights_cached(int(n), coords.tobytes(), int(order))


def _apply_axis(block: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """Contract ``block`` along ``axis`` with weights ``w`` (rows x cols)."""
    rows, cols = w.shape
    if rows == cols and np.array_equal(w, np.eye(rows)):
        return block  # unscaled axis: nothing to do
    moved = np.moveaxis(block, axis, 0).reshape(cols, -1)
    nz = np.abs(w) > 1e-12
    if nz.mean() < 0.25:  # banded weights (the usual case): sparse product
        out = sparse.csr_matrix(np.where(nz, w, 0.0).astype(block.dtype)) @ moved
    else:
        out = w.astype(block.dtype) @ moved
    rest = block.shape[:axis] + block.shape[axis + 1 :]
    return np.moveaxis(np.asarray(out).reshape((rows, *rest)), 0, axis)


def interpolate_block(
    data: np.ndarray,
    t: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    order: int,
) -> np.ndarray:
    """Interpolate a TZYX ``data`` (any array-like, e.g. a memmap) on the outer-product grid."""
    starts, mats = [], []
    for n, c in zip(data.shape, (t, z, y, x), strict=True):
        s, w = axis_weights(n, c, order)
        starts.append(s)
        mats.append(w)
    sl = tuple(slice(s, s + w.shape[1]) for s, w in zip(starts, mats, strict=True))
    block = np.array(data[sl], dtype=np.float32)
    # Contract the axis that shrinks the block most first (cheapest order).
    for ax in sorted(range(4), key=lambda a: mats[a].shape[0] / mats[a].shape[1]):
        block = _apply_axis(block, mats[ax], ax)
    return np.ascontiguousarray(block, dtype=np.float32)


class ClassicalRenderer:
    """BlockRenderer over a model directory's stored (normalized) input."""

    def __init__(self, data: np.ndarray, order: int):
        self.data = data
        self.order = order

    def render_block(self, t, z, y, x, spacing=None, keep_measured=True) -> np.ndarray:  # noqa: ARG002
        """Interpolation: measured frames are always returned as acquired."""
        return interpolate_block(self.data, t, z, y, x, self.order)


class ClassicalMethod:
    """cubic / linear / nearest: nothing to learn, rendering interpolates the stored input."""

    def __init__(self, name: str):
        self.name = name
        self.order = SPLINE_ORDER[name]

    def train(
        self, model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]
    ) -> Iterator[Progress]:
        t0 = time.perf_counter()
        model_dir.update_meta(train_steps=0, train_seconds=0.0, spline_order=self.order)
        yield Progress(
            step=1,
            total=1,
            seconds=time.perf_counter() - t0,
            eta=0.0,
            done=True,
            message=f"{self.name}: no training needed",
        )

    def load_renderer(self, model_dir: ModelDir, device: str = "cpu") -> ClassicalRenderer:  # noqa: ARG002
        return ClassicalRenderer(model_dir.input, self.order)
