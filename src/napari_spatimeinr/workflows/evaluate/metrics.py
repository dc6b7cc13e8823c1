"""Scores of a reconstruction against the withheld truth (DESIGN.md, "Evaluation protocol").

* Intensities are normalized by the 0.1/99.9 percentiles of the *scored truth* (the withheld frames of
  a temporal task, every frame of a spatial one): ``(v - p0.1) / (p99.9 - p0.1)``, so the data range
  is 1. Values are not clipped.
* PSNR = ``10·log10(1 / MSE)`` (data range 1). Per frame: the MSE over that frame's voxels. Overall:
  the MSE over all scored voxels (not the mean of per-frame PSNRs).
* SSIM: scikit-image's ``structural_similarity`` (7×7 uniform window, K1 = 0.01, K2 = 0.03, data range
  1) on every 2D y-x slice, averaged over the slices of a frame (per frame) and over all scored slices
  (overall). 2D slices rather than 3D blocks: volumes are often only a few slices deep and strongly
  anisotropic, and a 2D+t stack (Z = 1) is scored the same way as a 4D one. Slices smaller than 7
  pixels use the largest odd window that fits (at least 3); smaller slices get no SSIM (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from skimage.metrics import structural_similarity

LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9
SSIM_WINDOW = 7


def truth_range(truth: np.ndarray) -> tuple[float, float]:
    """The (low, high) = 0.1/99.9 percentiles of ``truth`` (the full range if they coincide)."""
    a = np.asarray(truth)
    low, high = (float(v) for v in np.percentile(a, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    if not high > low:
        low, high = float(a.min()), float(a.max())
    if not high > low:
        high = low + 1.0  # a constant truth: any unit will do, errors stay comparable
    return low, high


def normalize(a: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(a - low) / (high - low)`` as float64."""
    return (np.asarray(a, dtype=np.float64) - low) / (high - low)


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    d = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(m: float, data_range: float = 1.0) -> float:
    """PSNR in dB; ``inf`` for a perfect match."""
    if m <= 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / m)


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR (dB) of ``pred`` against ``truth`` (same shape, same units, given data range)."""
    return psnr_from_mse(mse(pred, truth), data_range)


def ssim_window(ny: int, nx: int) -> int | None:
    """The SSIM window for a ``ny × nx`` slice: 7, or the largest odd size >= 3 that fits."""
    w = min(SSIM_WINDOW, ny, nx)
    if w % 2 == 0:
        w -= 1
    return w if w >= 3 else None


def ssim_slices(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """SSIM of every 2D y-x slice of two arrays of shape (..., Y, X): an array of shape (...)."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    lead = truth.shape[:-2]
    out = np.full(lead, np.nan)
    win = ssim_window(*truth.shape[-2:])
    if win is None:
        return out
    for idx in np.ndindex(*lead):
        out[idx] = structural_similarity(pred[idx], truth[idx], data_range=data_range, win_size=win)
    return out


def _num(v: float) -> float | None:
    """A finite float, or None (JSON has no NaN/inf)."""
    return float(v) if math.isfinite(v) else None


def score(
    pred: np.ndarray,
    truth: np.ndarray,
    frames: Sequence[int],
    low: float,
    high: float,
) -> dict:
    """Score ``pred`` against ``truth`` (both TZYX, raw units) on the truth frames ``frames``.

    Returns ``{"psnr", "ssim", "per_frame": [{"t", "psnr", "ssim"}]}`` where ``t`` indexes the truth
    (= the original stack's frame). Intensities are normalized by ``(low, high)`` first (see module
    docstring). Non-finite values (a perfect match gives an infinite PSNR) are stored as ``None``.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    per_frame = []
    sq_sum = 0.0
    n_vox = 0
    ssims = []
    for t in frames:
        p = normalize(pred[t], low, high)
        g = normalize(truth[t], low, high)
        d = p - g
        sq = float(np.sum(d * d))
        sq_sum += sq
        n_vox += d.size
        s = ssim_slices(p, g)
        ssims.append(s)
        per_frame.append(
            {
                "t": int(t),
                "psnr": _num(psnr_from_mse(sq / d.size)),
                "ssim": _num(float(np.mean(s))),
            }
        )
    all_ssim = np.concatenate([s.ravel() for s in ssims]) if ssims else np.array([np.nan])
    return {
        "psnr": _num(psnr_from_mse(sq_sum / max(n_vox, 1))),
        "ssim": _num(float(np.mean(all_ssim))),
        "per_frame": per_frame,
    }


#: Gaussian blur (y, x) whose residual measures a frame's high-frequency (noise, fine detail) energy
FLICKER_SIGMA = 1.0


def high_frequency(frame: np.ndarray) -> float:
    """Std of ``frame`` minus its Gaussian blur (σ = 1 in y and x): its high-frequency energy."""
    from scipy.ndimage import gaussian_filter

    f = np.asarray(frame, dtype=np.float64)
    sigma = [0.0] * (f.ndim - 2) + [FLICKER_SIGMA, FLICKER_SIGMA]
    return float(np.std(f - gaussian_filter(f, sigma)))


def flicker_ratio(render: np.ndarray, measured: Sequence[int]) -> float | None:
    """Mean high-frequency energy of the frames at measured instants over that of the others.

    About 1 when measured and new frames share one noise level (a smooth movie); well above 1 when
    measured frames are raw and new ones denoised (every k-th frame pulses with noise). None
    without both kinds of frames.
    """
    measured_set = {int(i) for i in measured}
    new = [i for i in range(render.shape[0]) if i not in measured_set]
    kept = [i for i in sorted(measured_set) if 0 <= i < render.shape[0]]
    if not new or not kept:
        return None
    hf_kept = np.mean([high_frequency(render[i]) for i in kept])
    hf_new = np.mean([high_frequency(render[i]) for i in new])
    return float(hf_kept / hf_new) if hf_new > 0 else None
