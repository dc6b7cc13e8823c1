"""Self-supervision by further degradation (seed 001 §3.4): one training example per step.

The input is sub-sampled once more along one axis (every k-th sample from an offset o, k drawn from
[degrade_min, degrade_max]); the network sees the degraded ("coarse") block and must predict the
input's own voxels in between, at coordinates expressed in the coarse grid. Rendering then applies the
same network to the input itself, queried in between its samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...core.config import SpatimeINRParams
from ...core.errors import SpatimeINRError
from .network import window_frames

AXIS_INDEX = {"T": 0, "Z": 1, "Y": 2, "X": 3}


@dataclass
class Example:
    """One degraded block and its targets (all indices into the input, TZYX)."""

    axis: int  # degraded axis (0..3)
    k: int  # degradation factor
    frames: torch.Tensor  # (4,) input frame of each window frame
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input indices of the coarse block
    spacing: torch.Tensor  # (4,) input voxel side in coarse units (t, z, y, x)
    target: torch.Tensor  # (N, 4) long input indices (t, z, y, x)
    p: torch.Tensor  # (N, 3) spatial query, coarse units relative to the block
    f: torch.Tensor  # (N,) time fraction between window frames 1 and 2


def eligible_axes(shape: tuple[int, ...], params: SpatimeINRParams) -> list[int]:
    """Axes of ``params.sr_axes`` long enough to be degraded (at least 3 samples)."""
    axes = [AXIS_INDEX[a] for a in params.sr_axes.upper() if shape[AXIS_INDEX[a]] >= 3]
    if not axes:
        raise SpatimeINRError(
            f"The stack {tuple(shape)} (T, Z, Y, X) is too small to learn from along the axes "
            f"{params.sr_axes}: each needs at least 3 samples. Set params.sr_axes to longer axes."
        )
    return axes


def _randint(lo: int, hi: int, gen: torch.Generator) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return lo + int(torch.randint(hi - lo + 1, (1,), generator=gen))


def sample_example(
    shape: tuple[int, int, int, int],
    params: SpatimeINRParams,
    gen: torch.Generator,
    n_targets: int,
    axes: list[int] | None = None,
) -> Example:
    """Draw a degradation (axis, k, offset), a block and ``n_targets`` target voxels (with repeats)."""
    axes = axes or eligible_axes(shape, params)
    a = axes[_randint(0, len(axes) - 1, gen)]
    n = shape[a]
    kmax = max(1, min(int(math.floor(params.degrade_max)), n - 1))
    kmin = min(max(1, int(math.ceil(params.degrade_min))), kmax)
    k = _randint(kmin, kmax, gen)
    o = _randint(0, min(k - 1, n - 1 - k), gen)
    coarse = [np.arange(s) for s in shape]
    coarse[a] = np.arange(o, n, k)
    step = [1, 1, 1, 1]
    step[a] = k
    tc = len(coarse[0])
    i = _randint(0, max(tc - 2, 0), gen)
    frames = coarse[0][window_frames(i, tc)]
    crop = []
    for ax in (1, 2, 3):
        nc = len(coarse[ax])
        size = min(nc, params.patch_size)
        c0 = _randint(0, nc - size, gen)
        crop.append(coarse[ax][c0 : c0 + size])
    # target ranges (inclusive) in input indices
    t0 = int(frames[1])
    t1 = int(frames[2])
    lo = [t0] + [int(c[0]) for c in crop]
    hi = [t1] + [int(c[-1]) for c in crop]
    tgt = torch.stack(
        [
            lo[d]
            + (torch.rand(n_targets, generator=gen) * (hi[d] - lo[d] + 1))
            .long()
            .clamp(max=hi[d] - lo[d])
            for d in range(4)
        ],
        dim=1,
    )
    if a != 0 and t1 > t0:  # time not degraded: only the two measured frames are targets
        tgt[:, 0] = torch.where(tgt[:, 0] > t0, t1, t0)
    # Along the degraded axis, only samples *between* the kept ones are targets: a kept sample is
    # also in the encoder's input, and learning to copy it would teach the network its noise.
    cells = max((hi[a] - lo[a]) // k, 1)
    c = (torch.rand(n_targets, generator=gen) * cells).long().clamp(max=cells - 1)
    j = 1 + (torch.rand(n_targets, generator=gen) * (k - 1)).long().clamp(max=k - 2)
    tgt[:, a] = lo[a] + k * c + j
    f = (tgt[:, 0] - t0).float() / max(t1 - t0, 1)
    p = torch.stack([(tgt[:, d + 1] - lo[d + 1]).float() / step[d + 1] for d in range(3)], dim=1)
    spacing = torch.tensor([1.0 / s for s in step])
    return Example(
        axis=a,
        k=k,
        frames=torch.as_tensor(frames),
        zyx=tuple(torch.as_tensor(c) for c in crop),  # type: ignore[arg-type]
        spacing=spacing,
        target=tgt,
        p=p,
        f=f,
    )


def gather_window(data: torch.Tensor, ex: Example) -> torch.Tensor:
    """The coarse block (4, z, y, x) the encoder sees for ``ex``."""
    dev = data.device
    fr, zc, yc, xc = (v.to(dev) for v in (ex.frames, *ex.zyx))
    return data[fr[:, None, None, None], zc[None, :, None, None], yc[None, None, :, None], xc]


def keep_targets(ex: Example, mask: torch.Tensor) -> Example:
    """Keep only the targets where ``mask`` (bool, TZYX) is True."""
    t = ex.target
    keep = mask[t[:, 0], t[:, 1], t[:, 2], t[:, 3]]
    ex.target, ex.p, ex.f = t[keep], ex.p[keep], ex.f[keep]
    return ex
