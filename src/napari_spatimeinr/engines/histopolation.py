"""Mean-preserving spline resampling (histopolation) along one axis.

A voxel is read as the *mean* of a continuous signal over its cell (the view of the paper's cycle
consistency, seed 001 eqs. 11-12, and of the evaluation's mean pooling). The running integral
``C(x)`` of the signal is known exactly at the cell edges ``x = j - 0.5`` (the cumulative sum of
the voxels); a cubic spline through those values (natural end conditions) gives a smooth ``C``,
and the value rendered for an output voxel centred at ``p`` with side ``w`` is its mean
``(C(p + w/2) - C(p - w/2)) / w``. So:

* at the input's own voxels (``p`` integer, ``w = 1``) it returns the input exactly;
* the mean of the rendered sub-voxels of an input voxel is that voxel (cycle consistency holds by
  construction);
* outside the sampled range the first / last voxel is repeated (like ``mode="nearest"``).

The operator is linear in the data, so it is built once as a matrix (outputs x inputs) and applied
with a tensor contraction.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

#: below this output width (in input voxels) the mean is replaced by the point value C'(p)
MIN_WIDTH = 1e-6


def _cumulative_rows(n: int, x: np.ndarray) -> np.ndarray:
    """Rows ``R`` (len(x), n) with ``C(x) = R @ data`` for the spline of the running integral."""
    x = np.asarray(x, dtype=np.float64)
    rows = np.zeros((x.size, n))
    lo, hi = -0.5, n - 0.5
    inside = (x >= lo) & (x <= hi)
    if n == 1:
        rows[:, 0] = x - lo  # a constant signal
        return rows
    if inside.any():
        edges = np.arange(n + 1, dtype=np.float64) - 0.5
        cum = np.tril(np.ones((n + 1, n)), k=-1)  # C at edge j = sum of the first j voxels
        rows[inside] = CubicSpline(edges, cum, axis=0, bc_type="natural")(x[inside])
    below = x < lo
    rows[below, 0] = x[below] - lo  # repeat the first voxel
    above = x > hi
    rows[above] = 1.0
    rows[above, n - 1] += x[above] - hi  # repeat the last voxel
    return rows


def cell_mean_matrix(n: int, positions: np.ndarray, width: float) -> np.ndarray:
    """Matrix (len(positions), n): means over ``[p - width/2, p + width/2]`` of the spline signal.

    ``positions`` are output voxel centres and ``width`` the output voxel side, both in input index
    units (voxel ``j`` covers ``[j - 0.5, j + 0.5]``).
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1)
    if n < 1:
        raise ValueError("an axis needs at least one sample")
    w = float(width)
    if w < MIN_WIDTH:  # the point value: derivative of the running integral
        h = 1e-4
        return (_cumulative_rows(n, p + h) - _cumulative_rows(n, p - h)) / (2 * h)
    return (_cumulative_rows(n, p + w / 2) - _cumulative_rows(n, p - w / 2)) / w


def resample_axis(data: np.ndarray, axis: int, positions: np.ndarray, width: float) -> np.ndarray:
    """``data`` resampled along ``axis`` at ``positions`` (output voxel side ``width``); float32.

    Returns ``data`` itself (no copy) when the positions are the input voxels at width 1.
    """
    n = data.shape[axis]
    p = np.asarray(positions, dtype=np.float64).reshape(-1)
    if abs(width - 1.0) < 1e-9 and p.size == n and np.allclose(p, np.arange(n), atol=1e-9):
        return data
    m = cell_mean_matrix(n, p, width).astype(np.float32)
    out = np.tensordot(m, np.asarray(data, dtype=np.float32), axes=([1], [axis]))
    return np.moveaxis(out, 0, axis).astype(np.float32, copy=False)
