"""The baselines every evaluated method is compared with (DESIGN.md, "Evaluation protocol").

* ``nearest``, ``linear``, ``cubic``: scipy's ``map_coordinates(order=0/1/3, mode="nearest")`` over the
  whole TZYX input, evaluated on the output grid of :mod:`napari_spatimeinr.core.coords` (computed
  separably, which is exact for these tensor-product splines; see ``methods/classical.py``).
* ``motion`` (temporal tasks): motion-compensated interpolation. Between two neighbouring kept frames
  ``a`` and ``b`` scikit-image's TV-L1 optical flow ``v`` (``a(x) ≈ b(x + v(x))``; 3D when Z > 1,
  computed on intensities normalized by the input's 0.1/99.9 percentiles) gives, at the fraction
  ``α`` of the way from ``a`` to ``b``, ``(1-α)·a(x - α·v(x)) + α·b(x + (1-α)·v(x))``: both frames
  warped to the intermediate instant (linear interpolation, edges repeated) and blended by distance.
* ``smoothed``: the best (overall PSNR against the truth) of the other baselines after a Gaussian blur
  in y and x with σ ∈ {0.5, 1, 1.5, 2} output pixels: the bar that separates super-resolution from
  denoising. The chosen base and σ are recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from ...core.config import SPLINE_ORDER
from ...core.coords import make_grid
from ...core.progress import Progress
from ...data.normalize import Normalization
from ...engines.classical import interpolate_block
from ...engines.fast.motion import WARP_ORDER, motion_pair, tvl1_flow, warp  # noqa: F401 (re-exported)
from .metrics import normalize, psnr_from_mse

CLASSICAL = ("nearest", "linear", "cubic")
SIGMAS = (0.5, 1.0, 1.5, 2.0)
#: output voxels per slab of the classical baselines (float64 intermediates of ~64 MB)
CHUNK_VOXELS = 8_000_000


def baselines_for(task: str) -> tuple[str, ...]:
    """Every baseline of a task, in report order."""
    if task == "temporal":
        return (*CLASSICAL, "motion", "smoothed")
    return (*CLASSICAL, "smoothed")


def interpolate(
    data: np.ndarray,
    scale_t: float,
    scale_zyx: tuple[float, float, float],
    method: str,
    chunk_voxels: int = CHUNK_VOXELS,
) -> np.ndarray:
    """Classical interpolation of a TZYX array onto its ×(scale_t, scale_zyx) output grid.

    Equal to ``scipy.ndimage.map_coordinates(data, grid, order=..., mode="nearest")`` on the whole
    array (to < 1e-9 of the data range). Computed in slabs of output frames of about
    ``chunk_voxels`` voxels, so the float64 intermediates stay small. Returns float32.
    """
    grid = make_grid(data.shape, scale_t, scale_zyx)
    data = np.asarray(data, dtype=np.float32)
    out = np.empty(grid.shape, dtype=np.float32)
    per_frame = max(1, int(np.prod(grid.shape[1:])))
    step = max(1, chunk_voxels // per_frame)
    order = SPLINE_ORDER[method]
    for t0 in range(0, grid.shape[0], step):
        t = grid.t[t0 : t0 + step]
        out[t0 : t0 + t.size] = interpolate_block(data, t, grid.z, grid.y, grid.x, order)
    return out


def motion_interpolate(
    data: np.ndarray,
    factor: int,
    stop: Callable[[], bool] | None = None,
) -> Generator[Progress, None, np.ndarray | None]:
    """Motion-compensated temporal ×``factor`` interpolation of a TZYX array.

    A generator: yields one :class:`Progress` per pair of neighbouring frames and returns the
    ``((T-1)·k + 1, Z, Y, X)`` float32 result (``None`` if ``stop()`` turned True). Input frames
    reappear unchanged at their own instants.
    """
    k = int(factor)
    data = np.asarray(data, dtype=np.float32)
    n_t = data.shape[0]
    spatial = data.shape[1:] if data.shape[1] > 1 else data.shape[2:]  # 3D flow only when Z > 1
    norm = Normalization.fit(data)
    out = np.empty(((n_t - 1) * k + 1, *data.shape[1:]), dtype=np.float32)
    for i in range(n_t - 1):
        if stop is not None and stop():
            return None
        a = data[i].reshape(spatial)
        b = data[i + 1].reshape(spatial)
        flow = tvl1_flow(norm.apply(a), norm.apply(b))
        out[i * k] = data[i]
        for m in range(1, k):
            out[i * k + m] = motion_pair(a, b, flow, m / k).reshape(data.shape[1:])
        yield Progress(step=i + 1, total=n_t - 1, message=f"motion: flow {i + 1}/{n_t - 1}")
    out[-1] = data[-1]
    return out


def blur_yx(pred: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a TZYX array in y and x only (σ in output pixels, edges repeated)."""
    return ndimage.gaussian_filter(
        np.asarray(pred, dtype=np.float32), (0, 0, sigma, sigma), mode="nearest"
    )


def best_smoothed(
    preds: Mapping[str, np.ndarray],
    truth: np.ndarray,
    frames: Sequence[int],
    low: float,
    high: float,
    sigmas: Iterable[float] = SIGMAS,
) -> tuple[str, float, np.ndarray, dict[str, dict[str, float]]]:
    """Pick the base and σ whose y-x blur scores the best overall PSNR on the scored frames.

    Returns ``(base, sigma, blurred full prediction, {base: {str(sigma): psnr}})``.
    """
    sigmas = tuple(float(v) for v in sigmas)
    if not preds:
        raise ValueError("best_smoothed needs at least one base prediction")
    sse = {(name, s): 0.0 for name in preds for s in sigmas}
    n_vox = 0
    for t in frames:  # frame by frame: memory stays at a few frames whatever the stack size
        g = normalize(truth[t], low, high)
        n_vox += g.size
        for name, pred in preds.items():
            frame = np.asarray(pred[t], dtype=np.float32)[np.newaxis]
            for s in sigmas:
                d = normalize(blur_yx(frame, s)[0], low, high) - g
                sse[(name, s)] += float(np.sum(d * d))
    table = {
        name: {f"{s:g}": psnr_from_mse(sse[(name, s)] / max(n_vox, 1)) for s in sigmas}
        for name in preds
    }
    base, sigma = min(sse, key=lambda key: sse[key])
    pred = preds[base]
    out = np.empty(pred.shape, dtype=np.float32)
    for t in range(pred.shape[0]):
        out[t] = blur_yx(pred[t][np.newaxis], sigma)[0]
    return base, sigma, out, table
