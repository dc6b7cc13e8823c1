"""Withholding data from a real stack (DESIGN.md, "Evaluation protocol").

* Temporal ×k: the input is frames ``0, k, 2k, …`` of the stack; the truth is every frame up to the last
  kept one; only the frames that were left out are scored.
* Spatial ×k: the input is the stack mean-pooled by ``k`` along z, y and x (or z only), cropped first to a
  multiple of ``k`` (the crop keeps the first voxels); the truth is the cropped stack; every frame is
  scored.

With the convention of :mod:`napari_spatimeinr.core.coords`, rendering the degraded input at ×k puts every
output sample exactly on a truth sample: frame ``j`` of a temporal ×k render happens at input instant
``j/k``, i.e. at original frame ``j``; output voxel ``j`` of a spatial ×k render of ``n`` pooled voxels
sits at pooled coordinate ``(j + 0.5)/k - 0.5``, and pooled voxel ``p`` is centred on original
coordinate ``k·p + (k-1)/2``, so the output voxel is centred on original voxel ``j``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ...core.errors import SpatimeINRError
from ...data.stack import Stack4D

Task = Literal["temporal", "spatial"]
TASKS = ("temporal", "spatial")


@dataclass
class Degraded:
    """A degraded input, the truth it came from, and how to render the input back onto the truth.

    Attributes:
        input: the degraded stack (physical metadata adjusted: frame interval or voxel size × k,
            origin shifted to the centre of the first pooled voxel).
        truth: float32 TZYX array in raw units; a render of ``input`` at ``scale_t``/``scale_zyx``
            has exactly this shape, sample for sample.
        scored: indices of the truth frames that are scored (the withheld ones for temporal tasks).
        scale_t: temporal factor to render the input at.
        scale_zyx: spatial factors (z, y, x) to render the input at.
        pooled_axes: the axes that were mean-pooled ("zyx", "yx", "z" or "" for temporal tasks).
        truth_scale: physical spacing (t, z, y, x) of the truth grid (napari layer ``scale``).
    """

    input: Stack4D
    truth: np.ndarray
    scored: np.ndarray
    scale_t: float
    scale_zyx: tuple[float, float, float]
    pooled_axes: str
    truth_scale: tuple[float, float, float, float]

    @property
    def input_scale(self) -> tuple[float, float, float, float]:
        """Physical spacing (t, z, y, x) of the degraded input (napari layer ``scale``)."""
        return self.input.scale_tzyx

    @property
    def input_translate(self) -> tuple[float, float, float, float]:
        """Physical offset of the input's first sample from the truth's (napari ``translate``)."""
        return tuple(  # type: ignore[return-value]
            a - b for a, b in zip(self.input.origin, self._truth_origin, strict=True)
        )

    @property
    def _truth_origin(self) -> tuple[float, float, float, float]:
        return self.input.extra.get("truth_origin", (0.0, 0.0, 0.0, 0.0))


def check_factor(factor: int) -> int:
    """The withholding factor: an integer >= 2."""
    try:
        k = int(factor)
    except (TypeError, ValueError):
        raise SpatimeINRError(f"The factor must be an integer >= 2, got {factor!r}.") from None
    if k != factor or k < 2:
        raise SpatimeINRError(
            f"The evaluation factor must be an integer >= 2 (e.g. --factor 4), got {factor!r}."
        )
    return k


def temporal_plan(n_frames: int, k: int, name: str = "the stack") -> int:
    """The last kept frame of a temporal ×k check on ``n_frames`` frames (at least two are kept)."""
    n_kept = (n_frames - 1) // k + 1
    if n_kept < 2:
        raise SpatimeINRError(
            f"A temporal ×{k} check needs at least {k + 1} frames (two kept frames {k} apart), but "
            f"{name!r} has {n_frames}: use a smaller --factor or a longer time-lapse."
        )
    return (n_kept - 1) * k


def spatial_plan(
    shape: tuple[int, int, int, int], k: int, z_only: bool, name: str = "the stack"
) -> tuple[str, tuple[int, int, int, int], tuple[int, int, int, int]]:
    """``(pooled axes, pooling factors (t,z,y,x), cropped shape)`` of a spatial ×k check."""
    axes = pooled_axes_for(shape, z_only)
    factors = [1, 1, 1, 1]
    crop = [int(v) for v in shape]
    for a in axes:
        i = "tzyx".index(a)
        n = crop[i]
        if n // k < 2:
            if a == "z" and n == 1:
                hint = "it has a single z slice, so drop --z-only (y and x are pooled then)"
            else:
                hint = "use a smaller --factor" + (" or --z-only" if a in "yx" else "")
            raise SpatimeINRError(
                f"A spatial ×{k} check pools {a.upper()} by {k}, but {name!r} has only {n} "
                f"{a.upper()} samples (at least {2 * k} are needed): {hint}."
            )
        factors[i] = k
        crop[i] = n // k * k
    return axes, tuple(factors), tuple(crop)  # type: ignore[return-value]


def degrade_temporal(stack: Stack4D, factor: int) -> Degraded:
    """Keep frames ``0, k, 2k, …``; the truth runs up to the last kept frame."""
    k = check_factor(factor)
    last = temporal_plan(stack.shape[0], k, stack.name)
    truth = np.ascontiguousarray(stack.data[: last + 1], dtype=np.float32)
    kept = np.ascontiguousarray(truth[::k])
    scored = np.array([i for i in range(last + 1) if i % k], dtype=np.int64)
    inp = replace(
        stack,
        data=kept,
        frame_interval=stack.frame_interval * k,
        name=f"{stack.name} t/{k}",
        extra={**stack.extra, "truth_origin": stack.origin},
    )
    return Degraded(
        input=inp,
        truth=truth,
        scored=scored,
        scale_t=float(k),
        scale_zyx=(1.0, 1.0, 1.0),
        pooled_axes="",
        truth_scale=stack.scale_tzyx,
    )


def pooled_axes_for(shape: tuple[int, int, int, int], z_only: bool) -> str:
    """Which spatial axes a spatial task pools: z only, or z, y and x (y and x when Z == 1)."""
    if z_only:
        return "z"
    return "yx" if shape[1] == 1 else "zyx"


def mean_pool(data: np.ndarray, factors: tuple[int, int, int, int]) -> np.ndarray:
    """Mean over non-overlapping blocks of ``factors`` (t, z, y, x); the shape must divide evenly."""
    shape = []
    for n, f in zip(data.shape, factors, strict=True):
        if n % f:
            raise SpatimeINRError(f"Cannot pool {n} samples by {f}: crop to a multiple first.")
        shape += [n // f, f]
    blocks = np.asarray(data, dtype=np.float64).reshape(shape)
    return blocks.mean(axis=(1, 3, 5, 7)).astype(np.float32)


def degrade_spatial(stack: Stack4D, factor: int, z_only: bool = False) -> Degraded:
    """Mean-pool by ``k`` along z, y, x (or z only), cropping each pooled axis to a multiple of k."""
    k = check_factor(factor)
    axes, factors, crop = spatial_plan(stack.shape, k, z_only, stack.name)
    truth = np.ascontiguousarray(
        stack.data[: crop[0], : crop[1], : crop[2], : crop[3]], dtype=np.float32
    )
    pooled = mean_pool(truth, factors)
    vz, vy, vx = stack.voxel_size
    spacing = (vz, vy, vx)
    voxel = tuple(s * f for s, f in zip(spacing, factors[1:], strict=True))
    # the first pooled voxel is centred (k-1)/2 original voxels in
    shift = tuple((f - 1) / 2 * s for s, f in zip(spacing, factors[1:], strict=True))
    origin = (stack.origin[0], *(o + d for o, d in zip(stack.origin[1:], shift, strict=True)))
    inp = replace(
        stack,
        data=pooled,
        voxel_size=voxel,
        origin=origin,
        name=f"{stack.name} {axes}/{k}",
        extra={**stack.extra, "truth_origin": stack.origin},
    )
    return Degraded(
        input=inp,
        truth=truth,
        scored=np.arange(truth.shape[0], dtype=np.int64),
        scale_t=1.0,
        scale_zyx=tuple(float(f) for f in factors[1:]),  # type: ignore[arg-type]
        pooled_axes=axes,
        truth_scale=stack.scale_tzyx,
    )


def degrade(stack: Stack4D, task: str, factor: int, z_only: bool = False) -> Degraded:
    """Dispatch on ``task`` ("temporal" or "spatial")."""
    check_request(task, z_only, stack.shape[0], stack.name)
    if task == "temporal":
        return degrade_temporal(stack, factor)
    return degrade_spatial(stack, factor, z_only)


def check_request(task: str, z_only: bool, n_frames: int, name: str = "the stack") -> None:
    """Refuse a task that cannot apply to the stack (before any work)."""
    if task not in TASKS:
        raise SpatimeINRError(f"Unknown task {task!r}: choose temporal or spatial.")
    if task == "temporal" and z_only:
        raise SpatimeINRError(
            "--z-only applies to the spatial task only: drop it, or use --task spatial."
        )
    if task == "temporal" and n_frames < 2:
        raise SpatimeINRError(
            f"{name!r} has a single time point: a temporal check needs a time-lapse "
            "(use --task spatial for a volume)."
        )


def plan_shapes(
    shape: tuple[int, int, int, int], task: str, factor: int, z_only: bool = False
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int], int]:
    """``(input_shape, truth_shape, number of scored frames)`` of a check, without any data.

    Raises the same :class:`SpatimeINRError` as :func:`degrade` for impossible requests (front ends
    validate a request with it before any work).
    """
    t, z, y, x = (int(v) for v in shape)
    check_request(task, z_only, t)
    k = check_factor(factor)
    if task == "temporal":
        last = temporal_plan(t, k)
        return ((last // k + 1, z, y, x), (last + 1, z, y, x), last + 1 - (last // k + 1))
    _, factors, crop = spatial_plan((t, z, y, x), k, z_only)
    pooled = tuple(n // f for n, f in zip(crop, factors, strict=True))
    return pooled, crop, t  # type: ignore[return-value]
