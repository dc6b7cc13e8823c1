"""The one coordinate convention of the package (see DESIGN.md, "Conventions").

All coordinates are in *input index units*: voxel ``i`` of an axis has its centre at ``i``, frame ``j``
happens at time ``j``.

* Space is sampled at voxel centres. A factor ``s`` on ``N`` voxels gives ``M = round(N*s)`` output
  voxels whose centres sit at ``(j + 0.5) * N / M - 0.5``. The output voxel size is the input's ``* N/M``.
* Time is sampled at frame instants. A factor ``k`` on ``T`` frames gives ``M = round((T-1)*k) + 1``
  frames at times ``j * (T-1) / (M-1)``, from the first to the last input frame; for integer ``k`` every
  input frame reappears at its own instant. The output frame interval is the input's ``* (T-1)/(M-1)``.

Every module (classical interpolation, the neural field, evaluation, writers) uses these helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import SpatimeINRError

AXES = "TZYX"


def check_factor(name: str, factor: float) -> float:
    """Return ``factor`` as float, or raise one clear error if it is not positive and finite."""
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise SpatimeINRError(f"{name} must be a number, got {factor!r}.") from None
    if not math.isfinite(f) or f <= 0:
        raise SpatimeINRError(
            f"{name} must be a positive finite number (e.g. 2 or 0.5), got {factor!r}."
        )
    return f


def spatial_size(n: int, scale: float) -> int:
    """Number of output voxels for ``n`` input voxels at factor ``scale`` (at least 1)."""
    return max(1, int(round(n * scale)))


def temporal_size(n_frames: int, scale: float) -> int:
    """Number of output frames for ``n_frames`` input frames at temporal factor ``scale``."""
    if n_frames <= 1:
        return 1
    return max(1, int(round((n_frames - 1) * scale)) + 1)


def spatial_coords(n: int, scale: float) -> np.ndarray:
    """Output voxel centres (float64, input index units) for ``n`` voxels at factor ``scale``."""
    m = spatial_size(n, scale)
    return (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5


def temporal_coords(n_frames: int, scale: float) -> np.ndarray:
    """Output frame instants (float64, input frame units) for ``n_frames`` at factor ``scale``."""
    m = temporal_size(n_frames, scale)
    if m == 1:
        return np.zeros(1)
    t = np.arange(m, dtype=np.float64) * ((n_frames - 1) / (m - 1))
    t[-1] = n_frames - 1  # exact end point
    return t


@dataclass(frozen=True)
class OutputGrid:
    """The output sampling grid of a render: per-axis coordinates in input index units.

    ``offset`` is the index of the first output sample of each axis within the full (un-cropped)
    output grid, so a ``t_range``/``roi`` render is exactly a sub-block of the full render.
    """

    t: np.ndarray
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    full_shape: tuple[int, int, int, int]
    offset: tuple[int, int, int, int]
    scale: tuple[float, float, float, float]  # (t, z, y, x) factors as asked

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.t), len(self.z), len(self.y), len(self.x))

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.t, self.z, self.y, self.x)

    def spacing_ratio(self, input_shape: tuple[int, int, int, int]) -> tuple[float, ...]:
        """Output spacing divided by input spacing per axis (t, z, y, x), from the *full* grid."""
        tn, zn, yn, xn = input_shape
        ft, fz, fy, fx = self.full_shape
        rt = (tn - 1) / (ft - 1) if ft > 1 and tn > 1 else 1.0
        return (rt, zn / fz, yn / fy, xn / fx)


def _validate(
    input_shape: tuple[int, int, int, int],
    scale_t: float,
    scale_zyx: tuple[float, float, float],
    t_range: tuple[float, float] | None,
    roi: tuple[int, int, int, int, int, int] | None,
) -> tuple[float, float, float, float]:
    """The factors (t, z, y, x) as floats; one clear error for any unusable request."""
    tn, zn, yn, xn = (int(v) for v in input_shape)
    st = check_factor("The temporal factor", scale_t)
    sz, sy, sx = (check_factor(f"The {a} factor", s) for a, s in zip("zyx", scale_zyx, strict=True))
    if tn == 1 and st != 1.0:
        raise SpatimeINRError(
            "This stack has a single time point (T=1), so it cannot be resampled in time: "
            "use a temporal factor of 1, or load a time-lapse."
        )
    if t_range is not None:
        a, b = (float(v) for v in t_range)
        if not (0 <= a <= b <= tn - 1):
            raise SpatimeINRError(
                f"The T range {a:g}..{b:g} is outside the stack's frames 0..{tn - 1}: "
                "give two frame indices A <= B within it."
            )
    if roi is not None:
        if len(roi) != 6:
            raise SpatimeINRError("The ROI needs six numbers: Z0 Z1 Y0 Y1 X0 X1.")
        for k, (name, n) in enumerate(zip("ZYX", (zn, yn, xn), strict=True)):
            lo, hi = int(roi[2 * k]), int(roi[2 * k + 1])
            if not (0 <= lo < hi <= n):
                raise SpatimeINRError(
                    f"The ROI's {name} range {lo}..{hi} is outside 0..{n}: give {name}0 < {name}1 "
                    f"within the stack's {n} voxels (half-open, input voxel indices)."
                )
    return st, sz, sy, sx


def _first(m: int, pred: Callable[[int], bool]) -> int:
    """The first index j in [0, m] where ``pred(j)`` holds (``pred`` monotonic), by bisection."""
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _count_in(m: int, ratio: float, lo: int, hi: int) -> int:
    """How many of the ``m`` spatial centres ``(j + 0.5) * ratio - 0.5`` lie in [lo-0.5, hi-0.5)."""

    def at_least(v: float) -> int:
        return _first(m, lambda j: (float(j) + 0.5) * ratio - 0.5 >= v)

    return at_least(hi - 0.5) - at_least(lo - 0.5)


def _empty_t_range(t_range: tuple[float, float], scale_t: float) -> SpatimeINRError:
    a, b = (float(v) for v in t_range)
    return SpatimeINRError(
        f"The T range {a:g}..{b:g} holds no output frame at the temporal factor {scale_t:g}: "
        "widen it (e.g. to whole frame numbers)."
    )


def grid_shape(
    input_shape: tuple[int, int, int, int],
    scale_t: float = 1.0,
    scale_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    t_range: tuple[float, float] | None = None,
    roi: tuple[int, int, int, int, int, int] | None = None,
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(shape, full_shape) of :func:`make_grid`'s grid, computed without building it.

    The same validation and the same floating-point coordinates as :func:`make_grid` (each
    coordinate evaluated on its own, by bisection), so the cost of an absurd factor can be known
    before any array of that size exists (see :mod:`napari_spatimeinr.limits`).
    """
    tn, zn, yn, xn = (int(v) for v in input_shape)
    st, sz, sy, sx = _validate(input_shape, scale_t, scale_zyx, t_range, roi)
    full = (temporal_size(tn, st), spatial_size(zn, sz), spatial_size(yn, sy), spatial_size(xn, sx))
    shape = list(full)
    if t_range is not None:
        m = full[0]
        step = (tn - 1) / (m - 1) if m > 1 else 0.0

        def tc(j: int) -> float:
            return float(tn - 1) if j == m - 1 and m > 1 else float(j) * step

        a, b = (float(v) for v in t_range)
        shape[0] = _first(m, lambda j: tc(j) > b + 1e-9) - _first(m, lambda j: tc(j) >= a - 1e-9)
    if roi is not None:
        for k, n in enumerate((zn, yn, xn)):
            count = _count_in(full[k + 1], n / full[k + 1], int(roi[2 * k]), int(roi[2 * k + 1]))
            shape[k + 1] = max(1, count)  # a tiny ROI at a coarse factor: the nearest voxel
    if shape[0] == 0:
        raise _empty_t_range(t_range, scale_t)  # type: ignore[arg-type]
    return tuple(shape), full  # type: ignore[return-value]


def make_grid(
    input_shape: tuple[int, int, int, int],
    scale_t: float = 1.0,
    scale_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    t_range: tuple[float, float] | None = None,
    roi: tuple[int, int, int, int, int, int] | None = None,
) -> OutputGrid:
    """Build the output grid for an input of ``input_shape`` (T, Z, Y, X).

    ``t_range=(a, b)``: keep output frames whose instant lies in ``[a, b]`` (input frame indices,
    both ends included). ``roi=(z0, z1, y0, y1, x0, x1)``: keep output voxels whose centres lie inside
    input voxels ``[z0, z1)`` etc. (half-open, input index units).
    """
    tn, zn, yn, xn = (int(v) for v in input_shape)
    st, sz, sy, sx = _validate(input_shape, scale_t, scale_zyx, t_range, roi)
    full = [
        temporal_coords(tn, st),
        spatial_coords(zn, sz),
        spatial_coords(yn, sy),
        spatial_coords(xn, sx),
    ]
    full_shape = tuple(len(a) for a in full)
    keep = [slice(None)] * 4
    if t_range is not None:
        a, b = (float(v) for v in t_range)
        idx = np.nonzero((full[0] >= a - 1e-9) & (full[0] <= b + 1e-9))[0]
        if idx.size == 0:
            raise _empty_t_range((a, b), st)
        keep[0] = slice(int(idx[0]), int(idx[-1]) + 1)
    if roi is not None:
        for k in range(3):
            lo, hi = int(roi[2 * k]), int(roi[2 * k + 1])
            c = full[k + 1]
            idx = np.nonzero((c >= lo - 0.5) & (c < hi - 0.5))[0]
            if idx.size == 0:  # a tiny ROI at a coarse factor: take the nearest output voxel
                idx = np.array([int(np.argmin(np.abs(c - (lo + hi - 1) / 2)))])
            keep[k + 1] = slice(int(idx[0]), int(idx[-1]) + 1)
    cut = [a[s] for a, s in zip(full, keep, strict=True)]
    offset = tuple(int(s.start or 0) for s in keep)
    return OutputGrid(*cut, full_shape=full_shape, offset=offset, scale=(st, sz, sy, sx))
