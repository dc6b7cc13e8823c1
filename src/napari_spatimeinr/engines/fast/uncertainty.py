"""Uncertainty of a render: the expected absolute error of every voxel, in intensity units.

The ``fast`` engine renders a new instant ``α`` of the way between measured frames ``i`` and
``i+1`` as ``R((1-α)·w0 + α·w1)``, ``w0``/``w1`` the two frames warped to that instant by the
optical flow ``v`` and ``R`` the refiner. What it knows about its own error, per voxel:

* ``disagreement``: the two warped frames ``w0 - w1`` (where they differ, the truth can lie anywhere
  between, or elsewhere: wrong motion, appearing or vanishing structure);
* ``edge_motion``: the rendered frame's gradient times the flow's magnitude (a small error in a
  large displacement moves an edge);
* ``flow_deformation``: the flow's own spatial gradient ``|∇v|`` (where the flow folds, tears or
  is inconsistent with a rigid motion: occlusions, divisions) times the rendered intensity;
* the rendered intensity itself (``noise_*``): fluorescence noise grows with the signal
  (Poisson–Gaussian: variance ``a + b·I + c·I²``);
* ``pixel_noise``: the noise level of each camera pixel (y, x), measured on the stack itself (the
  mean square of the measured planes minus their local mean, over all frames and planes): sCMOS
  cameras have pixels several times noisier than others, and a render cannot know better.
  A measured instant carries only the noise terms.

The motion terms are scaled by ``α(1-α)``, the variance of a Brownian bridge between the two
frames at that instant: zero at a measured instant, largest half-way. This makes the terms mean
the same over a gap of one frame (rendering) and of two frames (calibration, below).

The model (:class:`Calibration`) is ``E|err| = scale · s^power`` with ``s² = Σ_k w_k f_k`` over the
non-negative features ``f_k`` above (locally smoothed), ``w_k >= 0`` (so more disagreement, motion
or signal never predicts less error). It is fitted on the stack's own self-supervised held-out
pairs: each measured frame ``j`` predicted from frames ``j-1`` and ``j+1`` exactly as a new instant
is rendered (the flow ``j-1 → j+1`` is the two stored flows composed, ``α = 1/2``; the pixel noise
measured without frame ``j``), the squared error regressed on the features by non-negative least
squares reweighted by the predicted variance (a variance model), then ``scale`` and ``power``
fitted on the binned mean ``|err|``. It is written to the model directory as
``uncertainty.json`` (:data:`UNCERTAINTY_FILE`) at the end of training; a model trained before
this file existed gets the same fit on first use (in memory, a few seconds).

Everything here is numpy/scipy; the renderer (:mod:`napari_spatimeinr.engines.fast.render`)
supplies the frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import nnls

UNCERTAINTY_FILE = "uncertainty.json"
FORMAT_VERSION = 1
FEATURES = (
    "noise_constant",
    "noise_linear",
    "noise_quadratic",
    "pixel_noise",
    "disagreement",
    "edge_motion",
    "flow_deformation",
)
#: features that vanish at a measured instant (scaled by α(1-α))
MOTION_FEATURES = ("disagreement", "edge_motion", "flow_deformation")
#: Gaussian smoothing (voxels) of features and of the fitted squared error, along y and x (z: less)
SMOOTH_YX = 1.5
SMOOTH_Z = 0.7
#: voxels drawn for the fit, and quantile bins for scale and power
FIT_VOXELS = 200_000
N_BINS = 20
POWER_RANGE = (0.5, 2.0)


def _sigma(ndim: int) -> tuple[float, ...]:
    return (SMOOTH_Z, SMOOTH_YX, SMOOTH_YX) if ndim == 3 else (SMOOTH_YX, SMOOTH_YX)


def _smooth(a: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(a.astype(np.float32, copy=False), _sigma(a.ndim), mode="nearest")


def _grad2(a: np.ndarray) -> np.ndarray:
    """Squared gradient magnitude (central differences) of a 2D or 3D array; 0 on length-1 axes."""
    out = np.zeros(a.shape, dtype=np.float32)
    for ax in range(a.ndim):
        if a.shape[ax] > 1:
            out += np.gradient(a, axis=ax).astype(np.float32) ** 2
    return out


def frame_features(
    pred: np.ndarray,
    alpha: float,
    w0: np.ndarray | None = None,
    w1: np.ndarray | None = None,
    v: np.ndarray | None = None,
    pixel_noise: np.ndarray | None = None,
) -> np.ndarray:
    """The features (len(FEATURES), *S) float32 of one frame (normalized units, voxels).

    ``pred``: the rendered frame (*S), 2D (y, x) or 3D (z, y, x); ``w0``/``w1``: the two frames
    warped to the instant and ``v`` (nd, *S) the flow between the measured frames (voxels), all
    None at a measured instant (``alpha`` 0: the motion features are zero); ``pixel_noise``
    (Y, X): :func:`pixel_noise` of the stack (None: zero).
    """
    pred = np.asarray(pred, dtype=np.float32)
    level = np.clip(pred, 0.0, None)  # the render's own voxel: its expected noise
    signal = _smooth(level)
    out = np.zeros((len(FEATURES), *pred.shape), dtype=np.float32)
    out[0] = 1.0
    out[1] = level
    out[2] = level**2
    if pixel_noise is not None:
        out[3] = np.broadcast_to(np.asarray(pixel_noise, np.float32), pred.shape[-2:])
    h = float(alpha) * (1.0 - float(alpha))
    if h > 0 and w0 is not None and w1 is not None and v is not None:
        v = np.asarray(v, dtype=np.float32)
        speed2 = _smooth((v**2).sum(0))
        out[4] = h * _smooth((np.asarray(w0, np.float32) - np.asarray(w1, np.float32)) ** 2)
        out[5] = h * _smooth(_grad2(pred)) * speed2
        deform = sum(_grad2(c) for c in v)
        out[6] = h * _smooth(deform) * signal**2
    return out


#: planes (of all frames and z slices) that measure the noise of each camera pixel
PIXEL_NOISE_PLANES = 256
PIXEL_NOISE_SIGMA = 2.0


def pixel_noise(data: np.ndarray, exclude_frame: int | None = None) -> np.ndarray:
    """The noise level (mean square, normalized units²) of each pixel (Y, X) of a TZYX stack.

    Each y–x plane minus its Gaussian local mean (σ = 2 px) leaves mostly noise; its square is
    averaged over the planes of all frames and z slices (at most :data:`PIXEL_NOISE_PLANES`,
    evenly spread). ``exclude_frame``: leave that frame out (a held-out frame must not measure
    its own noise).
    """
    if not (hasattr(data, "shape") and hasattr(data, "__getitem__")):
        data = np.asarray(data)  # a lazily read stored input is read plane by plane instead
    n_t, n_z = data.shape[0], data.shape[1]
    step = max(1, (n_t * n_z) // PIXEL_NOISE_PLANES)
    acc = np.zeros(data.shape[-2:], np.float64)
    n = 0
    for k in range(0, n_t * n_z, step):
        t, z = divmod(k, n_z)
        if t == exclude_frame:
            continue
        p = np.asarray(data[t, z], np.float32)
        r = p - ndimage.gaussian_filter(p, PIXEL_NOISE_SIGMA, mode="nearest")
        acc += r.astype(np.float64) ** 2
        n += 1
    return (acc / max(n, 1)).astype(np.float32)


@dataclass
class Calibration:
    """The fitted map from features to the expected absolute error (normalized units)."""

    weights: list[float]
    scale: float
    power: float
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    #: what the fit saw: held-out frames, voxels, Spearman and top-decile ratio on them
    fit: dict[str, Any] = field(default_factory=dict)
    source: str = "training"
    format_version: int = FORMAT_VERSION

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """Expected |error| (*S) from features (len(FEATURES), *S)."""
        w = np.asarray(self.weights, dtype=np.float32).reshape(-1, *[1] * (feats.ndim - 1))
        s = np.sqrt(np.clip((w * feats).sum(0), 0.0, None))
        return (self.scale * np.power(s, self.power)).astype(np.float32)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if int(d.get("format_version", 0)) != FORMAT_VERSION or list(d["features"]) != list(
            FEATURES
        ):
            raise ValueError("another version of the uncertainty model")
        return cls(
            weights=[float(v) for v in d["weights"]],
            scale=float(d["scale"]),
            power=float(d["power"]),
            features=list(d["features"]),
            fit=dict(d.get("fit", {})),
            source=str(d.get("source", "training")),
        )


def fit_calibration(
    samples: list[tuple[np.ndarray, np.ndarray]], seed: int = 0, source: str = "training"
) -> Calibration:
    """Fit :class:`Calibration` on held-out predictions.

    ``samples``: per held-out frame, (features (len(FEATURES), *S), error ``pred - truth`` (*S)).
    """
    rng = np.random.default_rng(seed + 31337)
    feats, abs_err = [], []
    total = sum(e.size for _, e in samples)
    for f, e in samples:
        n = max(1, int(round(FIT_VOXELS * e.size / max(total, 1))))
        idx = rng.choice(e.size, size=min(n, e.size), replace=False)
        feats.append(f.reshape(len(FEATURES), -1)[:, idx])
        abs_err.append(np.abs(e).reshape(-1)[idx])
    a = np.concatenate(feats, 1).T.astype(np.float64)
    err = np.concatenate(abs_err).astype(np.float64)
    w = _fit_variance(a, err**2)
    s = np.sqrt(np.clip(a @ w, 0.0, None))
    scale, power = _fit_power(s, err)
    cal = Calibration(weights=[float(v) for v in w], scale=scale, power=power, source=source)
    pred = scale * np.power(s, power)
    cal.fit = {
        "frames": len(samples),
        "voxels": int(len(err)),
        "spearman": spearman(pred, err),
        "top_decile_ratio": top_decile_ratio(pred, err),
        "mean_abs_error": float(err.mean()),
    }
    return cal


#: reweighting rounds of the variance fit
IRLS_ROUNDS = 4


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.sqrt((a**2).mean(0))
    norms[norms == 0] = 1.0
    w, _ = nnls(a / norms, b, maxiter=50 * a.shape[1])
    return w / norms


def _fit_variance(a: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """Non-negative ``w`` with ``E[e²] = a @ w``: least squares reweighted by the predicted
    variance (a squared error scatters in proportion to its variance; unweighted, the few largest
    errors would decide the fit), a few rounds."""
    w = _nnls(a, e2)
    floor = 1e-3 * float(e2.mean()) + 1e-12
    for _ in range(IRLS_ROUNDS):
        m = np.maximum(a @ w, floor)
        w = _nnls(a / m[:, None], e2 / m)
    if not np.any(w > 0):  # nothing explains the error: a constant level
        w = np.zeros(a.shape[1])
        w[0] = float(e2.mean())
    return w


def _fit_power(s: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """``scale``, ``power`` of ``E|err| = scale · s^power`` on quantile bins of ``s``."""
    order = np.argsort(s)
    bins = [b for b in np.array_split(order, N_BINS) if len(b)]
    xs = np.array([s[b].mean() for b in bins])
    ys = np.array([err[b].mean() for b in bins])
    ok = (xs > 0) & (ys > 0)
    power = 1.0
    if ok.sum() >= 3 and np.ptp(np.log(xs[ok])) > 1e-6:
        power = float(np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)[0])
    power = float(np.clip(power, *POWER_RANGE))
    # scale: the mean predicted |err| equals the mean |err|
    denom = float(np.mean(np.power(s, power)))
    scale = float(err.mean() / denom) if denom > 0 else 1.0
    return scale, power


def load(path) -> Calibration | None:
    """The calibration stored at ``path`` (a file), or None when missing or of another version."""
    try:
        return Calibration.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- checks of a map against a known error (evaluation, QC) ----


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two same-size arrays (ties: average ranks); None if constant."""
    from scipy.stats import rankdata

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra**2).sum()) * float((rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else None


def top_decile_ratio(pred: np.ndarray, err: np.ndarray) -> float | None:
    """Mean |err| over the voxels in the top decile of ``pred``, over the mean |err| of all."""
    pred = np.asarray(pred).reshape(-1)
    err = np.abs(np.asarray(err, dtype=np.float64).reshape(-1))
    if err.size == 0 or err.mean() <= 0:
        return None
    k = max(1, err.size // 10)
    top = np.argpartition(-pred, k - 1)[:k]
    return float(err[top].mean() / err.mean())


#: voxels drawn for the Spearman correlations of a report
REPORT_VOXELS = 2_000_000


def report_metrics(
    uncertainty: np.ndarray,
    error: np.ndarray,
    rendered: np.ndarray,
    distance: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``"uncertainty"`` entry of an evaluation report.

    All arrays have one shape (the scored voxels); ``distance``: frames to the nearest measured
    frame. Spearman correlations on at most :data:`REPORT_VOXELS` voxels drawn at random (fixed by
    ``seed``); the top-decile ratio on all of them. The trivial maps are the rendered intensity,
    the distance, and their product.
    """
    unc = np.asarray(uncertainty, np.float32).reshape(-1)
    err = np.abs(np.asarray(error, np.float32)).reshape(-1)
    ren = np.asarray(rendered, np.float32).reshape(-1)
    dist = np.broadcast_to(np.asarray(distance, np.float32), np.shape(error)).reshape(-1)
    idx = np.arange(unc.size)
    if unc.size > REPORT_VOXELS:
        idx = np.random.default_rng(seed + 271).choice(unc.size, REPORT_VOXELS, replace=False)
    trivial = {
        "intensity": spearman(ren[idx], err[idx]),
        "distance": spearman(dist[idx], err[idx]),
        "intensity_x_distance": spearman(ren[idx] * dist[idx], err[idx]),
    }
    rho = spearman(unc[idx], err[idx])
    best_trivial = max((v for v in trivial.values() if v is not None), default=None)
    return {
        "spearman": rho,
        "top_decile_ratio": top_decile_ratio(unc, err),
        "trivial_spearman": trivial,
        "margin_over_trivial": (
            rho - best_trivial if rho is not None and best_trivial is not None else None
        ),
        "mean_predicted": float(unc.mean()),
        "mean_abs_error": float(err.mean()),
        "voxels": int(unc.size),
    }
