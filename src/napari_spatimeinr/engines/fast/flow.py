"""Optical flow in torch: coarse-to-fine TV-L1, batched over frame pairs, on the CPU or a GPU.

The ``fast`` engine's flow (the evaluation's ``motion`` baseline keeps scikit-image's TV-L1, as the
protocol in DESIGN.md says). The model is the same TV-L1 energy, minimized the same way (Zach, Pock
and Bischof 2007; Wedel et al. 2009): for each pyramid level from coarse to fine, a few *warps*
linearize the moving image around the current flow; each warp runs a few rounds of (1) a pointwise
thresholding step for the L1 data term and (2) a Chambolle projection step for the total-variation
term of each flow component. What differs from scikit-image:

* all frame pairs of a batch are solved at once as one tensor (torch's elementwise kernels use all
  cores, and the same code runs on CUDA);
* the pyramid halves only the axes that are still long (a 17-slice z axis is never reduced while a
  512-pixel x axis is), so thin volumes also get the coarse levels that large motions need;
* large frames are solved on a grid subsampled by ``stride`` in y and x (motion fields are smooth),
  and the flow is kept on that grid (:func:`upsample_flow` brings it back to the voxels).

Convention (as :mod:`napari_spatimeinr.engines.fast.motion`): ``reference(x) ≈ moving(x + v(x))``, ``v`` of shape
``(ndim, *spatial)`` in voxels of the full grid, components in axis order (z, y, x) or (y, x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .grid import auto_stride, flow_grid_shape  # noqa: F401 (the flow grid, part of this API)
from .motion import spatial_shape  # the one rule for 2D (Z = 1) and 3D frames

#: pyramid levels stop halving an axis at this many voxels (as scikit-image's ``min_size``)
MIN_SIZE = 16
MAX_LEVELS = 10


@dataclass(frozen=True)
class TVL1:
    """TV-L1 parameters (scikit-image's defaults, which the evaluation's ``motion`` baseline uses)."""

    attachment: float = 15.0
    tightness: float = 0.3
    num_warp: int = 5
    num_iter: int = 10
    reg_iter: int = 2
    tol: float = 1e-4


def _grid(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Identity sampling grid for :func:`F.grid_sample` (1, *shape, ndim), order (x, y[, z])."""
    axes = [
        torch.linspace(-1.0, 1.0, n, device=device) if n > 1 else torch.zeros(1, device=device)
        for n in shape
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh[::-1], dim=-1)[None]


def warp(images: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``images(x + disp(x))``: linear interpolation, edge values repeated.

    ``images``: (B, *S) with S 2D (y, x) or 3D (z, y, x); ``disp``: (B, ndim, *S) in voxels. Equal
    to ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` on the same coordinates.
    """
    shape = images.shape[1:]
    nd = len(shape)
    scale = [2.0 / (n - 1) if n > 1 else 0.0 for n in shape]
    out = torch.empty(images.shape, device=images.device, dtype=images.dtype)
    # one image at a time, its sampling grid built in place: the same values as the whole batch
    # at once, with the memory of one grid (a big frame's grid is 3 floats per voxel)
    for b in range(images.shape[0]):
        grid = _grid(shape, images.device).to(disp.dtype)  # (1, *S, ndim), order (x, y[, z])
        for c in range(nd):
            grid[..., nd - 1 - c] += disp[b, c] * scale[c]
        out[b] = F.grid_sample(
            images[b : b + 1, None],
            grid,
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )[0, 0]
    return out


def _gradient(u: torch.Tensor, axis: int, out: torch.Tensor) -> torch.Tensor:
    """Central differences of ``u`` along ``axis`` into ``out`` (one-sided at the ends; zero on a
    length-1 axis)."""
    n = u.shape[axis]
    if n < 2:
        return out.zero_()
    if n > 2:
        torch.sub(
            u.narrow(axis, 2, n - 2), u.narrow(axis, 0, n - 2), out=out.narrow(axis, 1, n - 2)
        )
        out.narrow(axis, 1, n - 2).mul_(0.5)
    torch.sub(u.narrow(axis, 1, 1), u.narrow(axis, 0, 1), out=out.narrow(axis, 0, 1))
    torch.sub(u.narrow(axis, n - 1, 1), u.narrow(axis, n - 2, 1), out=out.narrow(axis, n - 1, 1))
    return out


def _solve_level(
    ref: torch.Tensor, mov: torch.Tensor, flow: torch.Tensor, prm: TVL1
) -> torch.Tensor:
    """TV-L1 at one pyramid level, starting from ``flow`` (B, nd, *S); in-place updates on
    preallocated buffers (the solver is bound by memory traffic)."""
    nd = ref.ndim - 1
    dt = 0.5 / nd
    f0 = prm.attachment * prm.tightness
    f1 = dt / prm.tightness
    tol = prm.tol * ref[0].numel()
    flow = flow.contiguous().clone()
    shape = ref.shape
    # proj[:, c, ax]: dual variable of flow component c along axis ax
    proj = torch.zeros((shape[0], nd, nd, *shape[1:]), device=ref.device, dtype=ref.dtype)
    grad = torch.empty((shape[0], nd, *shape[1:]), device=ref.device, dtype=ref.dtype)
    aux = torch.empty_like(flow)
    rho = torch.empty_like(ref)
    norm = torch.empty_like(ref)
    div = torch.empty_like(ref)
    for _ in range(prm.num_warp):
        previous = flow.clone()
        moved = warp(mov, flow)
        for ax in range(nd):
            _gradient(moved, 1 + ax, grad[:, ax])
        inv_ni = (grad * grad).sum(1)
        inv_ni.masked_fill_(inv_ni == 0, 1.0).reciprocal_()
        rho0 = moved.sub_(ref)
        for c in range(nd):
            rho0.addcmul_(grad[:, c], flow[:, c], value=-1.0)
        for _ in range(prm.num_iter):
            # data term: pointwise thresholding
            rho.copy_(rho0)
            for c in range(nd):
                rho.addcmul_(grad[:, c], flow[:, c])
            rho.mul_(inv_ni).clamp_(-f0, f0)
            torch.addcmul(flow, grad, rho[:, None], value=-1.0, out=aux)
            # total variation: Chambolle projection, per component
            flow.copy_(aux)
            for c in range(nd):
                cur, p = flow[:, c], proj[:, c]
                for _ in range(prm.reg_iter):
                    norm.zero_()
                    for ax in range(nd):
                        a = 1 + ax
                        n = cur.shape[a]
                        g = div  # scratch: forward difference along ax
                        g.zero_()
                        if n > 1:
                            torch.sub(
                                cur.narrow(a, 1, n - 1),
                                cur.narrow(a, 0, n - 1),
                                out=g.narrow(a, 0, n - 1),
                            )
                        p[:, ax].sub_(g, alpha=dt)
                        norm.addcmul_(g, g)
                    norm.sqrt_().mul_(f1).add_(1.0)
                    p.div_(norm[:, None])
                    # cur = aux + (-divergence of p)
                    torch.sum(p, 1, out=div).neg_()
                    for ax in range(nd):
                        a = 1 + ax
                        n = cur.shape[a]
                        if n > 1:
                            div.narrow(a, 1, n - 1).add_(p[:, ax].narrow(a, 0, n - 1))
                    torch.add(aux[:, c], div, out=cur)
        change = ((previous - flow) ** 2).flatten(1).sum(1)
        if bool((change < tol).all()):
            break
    return flow


def _reduce(img: torch.Tensor, axes: list[int]) -> torch.Tensor:
    """Halve the listed spatial axes of (B, *S): a small Gaussian blur, then linear resampling."""
    x = img[:, None]
    shape = list(img.shape[1:])
    for ax in axes:
        k = torch.tensor([0.25, 0.5, 0.25], device=img.device, dtype=img.dtype)
        view = [1] * len(shape)
        view[ax] = 3
        w = k.view(1, 1, *view)
        pad = [0, 0] * len(shape)
        pad[2 * (len(shape) - 1 - ax)] = 1
        pad[2 * (len(shape) - 1 - ax) + 1] = 1
        x = (F.conv3d if len(shape) == 3 else F.conv2d)(F.pad(x, pad, mode="replicate"), w)
        shape[ax] = max(1, math.ceil(shape[ax] / 2))
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    return F.interpolate(x, size=shape, mode=mode, align_corners=True)[:, 0]


def resize_flow(flow: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``flow`` (B, nd, *S) resampled (linear) to ``shape``, its values rescaled to that grid."""
    old = flow.shape[2:]
    if tuple(old) == tuple(shape):
        return flow
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    out = F.interpolate(flow, size=tuple(shape), mode=mode, align_corners=True)
    scale = [(n - 1) / (o - 1) if o > 1 and n > 1 else 1.0 for n, o in zip(shape, old, strict=True)]
    return out * torch.tensor(scale, device=flow.device, dtype=flow.dtype).view(
        1, -1, *[1] * len(shape)
    )


def pyramid_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Level shapes from fine to coarse; an axis is halved while longer than 2 × ``MIN_SIZE``."""
    levels = [tuple(shape)]
    while len(levels) < MAX_LEVELS:
        last = levels[-1]
        axes = [i for i, n in enumerate(last) if n > 2 * MIN_SIZE]
        if not axes:
            break
        levels.append(tuple(math.ceil(n / 2) if i in axes else n for i, n in enumerate(last)))
    return levels


def tvl1(ref: torch.Tensor, mov: torch.Tensor, prm: TVL1 | None = None) -> torch.Tensor:
    """Coarse-to-fine TV-L1 flow (B, nd, *S) with ``ref(x) ≈ mov(x + v(x))`` for each pair."""
    prm = prm or TVL1()
    shapes = pyramid_shapes(tuple(ref.shape[1:]))
    refs, movs = [ref], [mov]
    for a, b in zip(shapes[:-1], shapes[1:], strict=False):
        axes = [i for i, (m, n) in enumerate(zip(a, b, strict=True)) if m != n]
        refs.append(_reduce(refs[-1], axes))
        movs.append(_reduce(movs[-1], axes))
    flow = torch.zeros((ref.shape[0], ref.ndim - 1, *shapes[-1]), device=ref.device)
    for level in range(len(shapes) - 1, -1, -1):
        flow = _solve_level(refs[level], movs[level], resize_flow(flow, shapes[level]), prm)
    return flow


def subsample(frames: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Frames (B, *S) averaged down to ``grid`` (area averaging in y and x)."""
    if tuple(frames.shape[1:]) == tuple(grid):
        return frames
    if frames.ndim == 3:
        return F.adaptive_avg_pool2d(frames[:, None], grid)[:, 0]
    return F.adaptive_avg_pool3d(frames[:, None], grid)[:, 0]


def upsample_flow(flow: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A flow stored on a subsampled grid (B, nd, *g) brought to the voxels ``shape``.

    Sample ``j`` of an axis of ``n`` voxels subsampled to ``m`` covers voxels around
    ``(j + 0.5) · n/m - 0.5``; values are linear between them (edges repeated) and scaled by ``n/m``.
    """
    g = flow.shape[2:]
    if tuple(g) == tuple(shape):
        return flow
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    out = F.interpolate(flow.float(), size=tuple(shape), mode=mode, align_corners=False)
    scale = [n / m for n, m in zip(shape, g, strict=True)]
    return out.mul_(
        torch.tensor(scale, device=flow.device, dtype=out.dtype).view(1, -1, *[1] * len(shape))
    )


#: voxels (pairs × flow-grid voxels) solved in one batch; bounds memory (~60 floats per voxel)
BATCH_VOXELS = 1 << 22


def solve_pairs(
    data: np.ndarray,
    i0: int,
    i1: int,
    stride: int,
    device: torch.device | str = "cpu",
    norm=None,
) -> np.ndarray:
    """Flows of the pairs (i, i+1), ``i0 <= i < i1``, of a TZYX array: float16 (i1-i0, nd, *grid).

    ``grid`` is :func:`flow_grid_shape` of the frames' :func:`spatial_shape`. Frames are
    normalized by ``norm`` (default: robust percentiles of ``data``; pass the same one for every
    batch of a stack) so that the TV-L1 parameters mean the same on every stack.
    """
    from ...data.normalize import Normalization  # numpy-only helper

    norm = norm or Normalization.fit(data)
    sp = spatial_shape(data.shape)
    frames = torch.from_numpy(
        np.ascontiguousarray(norm.apply(data[i0 : i1 + 1]).reshape(i1 - i0 + 1, *sp))
    ).to(device=torch.device(device), dtype=torch.float32)
    small = subsample(frames, flow_grid_shape(sp, stride))
    with torch.no_grad():
        v = tvl1(small[:-1], small[1:])
    return v.to(torch.float16).cpu().numpy()


def pairs_per_batch(shape: tuple[int, ...], stride: int, batch_voxels: int = BATCH_VOXELS) -> int:
    """Pairs solved together so that a batch holds about ``batch_voxels`` flow-grid voxels."""
    per_pair = int(np.prod(flow_grid_shape(spatial_shape(shape), stride)))
    return max(1, batch_voxels // per_pair)


def iter_frame_flows(
    data: np.ndarray,
    stride: int,
    device: torch.device | str = "cpu",
    batch_voxels: int = BATCH_VOXELS,
):
    """Flows between all neighbouring frames of a TZYX array, batch by batch.

    Yields ``(first pair index, flows)`` (see :func:`solve_pairs`), one normalization for all.
    """
    from ...data.normalize import Normalization

    norm = Normalization.fit(data)
    n_pairs = data.shape[0] - 1
    batch = pairs_per_batch(data.shape, stride, batch_voxels)
    for i0 in range(0, n_pairs, batch):
        yield i0, solve_pairs(data, i0, min(n_pairs, i0 + batch), stride, device, norm)


def full_flow(stored: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A stored flow (nd, *grid) (any float dtype) on the voxels ``shape``, float32 (nd, *shape)."""
    return upsample_flow(torch.from_numpy(np.asarray(stored, dtype=np.float32))[None], shape)[0]


def warp_pair(
    a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``a`` and ``b`` (each (*S)) warped to the fraction ``alpha`` of the way from ``a`` to
    ``b``, given the full-grid flow ``v`` (nd, *S) with ``a(x) ≈ b(x + v(x))``; as one batch (2, *S).

    The same warps as :func:`napari_spatimeinr.engines.fast.motion.warp_pair`: ``a(x - α·v(x))`` and
    ``b(x + (1-α)·v(x))``.
    """
    wa = warp(a[None], (-alpha * v)[None])
    return torch.cat([wa, warp(b[None], ((1.0 - alpha) * v)[None])])
