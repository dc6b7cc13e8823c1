"""Lateral self-supervision: degrade y–x planes along one lateral axis so that it looks like z.

Units. A lateral line is sampled every ``dx`` µm; a z voxel spans ``dz`` µm, i.e. ``r = dz/dx``
lateral pixels. The input voxel of a training pair is the mean of the (blurred) line over ``r``
pixels, sampled every ``r`` pixels — exactly what mean-pooling z does to a stack (the evaluation
protocol), or what a z voxel integrating over its own extent does. A render at factor ``s`` asks for
output cells of ``r/s`` pixels, so the target of a pair at factor ``s`` is the mean of the same line
over cells of ``r/s`` pixels: the training factor is the requested factor, the ratio ``r`` fixes
the size of the input voxel in pixels. Lines are read as piecewise-constant over their pixels, so
both means are exact integrals for any float widths (running sums, linearly interpolated).

A microscope blurs more along z than laterally; that extra blur (a Gaussian of ``sigma`` pixels
along the degraded axis, applied before the box) is estimated by matching the lag-1 correlation of
the stack's z lines with that of degraded lateral lines (:func:`estimate_axial_blur`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur_lines(lines: torch.Tensor, sigma: float) -> torch.Tensor:
    """``lines`` (B, L, W) blurred along L (dim 1) by a Gaussian of ``sigma`` px (reflect edges)."""
    if sigma <= 0.05:
        return lines
    rad = max(1, int(math.ceil(3 * sigma)))
    k = torch.arange(-rad, rad + 1, dtype=lines.dtype, device=lines.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    b, n, w = lines.shape
    x = lines.permute(0, 2, 1).reshape(b * w, 1, n)
    x = F.pad(x, (rad, rad), mode="replicate")
    x = F.conv1d(x, k)
    return x.reshape(b, w, n).permute(0, 2, 1)


def running_sum(lines: torch.Tensor) -> torch.Tensor:
    """Integral at the pixel edges 0..L of ``lines`` (B, L, W): (B, L+1, W), float64 for accuracy."""
    z = torch.zeros_like(lines[:, :1], dtype=torch.float64)
    return torch.cat([z, torch.cumsum(lines.double(), dim=1)], dim=1)


def _integral_at(cum: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Running integral (B, L+1, W) at float ``edges`` (B, K) in pixels: (B, K, W)."""
    n = cum.shape[1] - 1
    e = edges.clamp(0, n)
    i0 = e.floor().long().clamp(max=n - 1)
    frac = (e - i0.to(e.dtype)).unsqueeze(-1)
    w = cum.shape[2]
    c0 = torch.gather(cum, 1, i0.unsqueeze(-1).expand(-1, -1, w))
    c1 = torch.gather(cum, 1, (i0 + 1).unsqueeze(-1).expand(-1, -1, w))
    return c0 + frac * (c1 - c0)


def cell_means(cum: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Means of the lines over the cells between consecutive ``edges`` (B, K+1): (B, K, W) float32."""
    c = _integral_at(cum, edges.double())
    width = (edges[:, 1:] - edges[:, :-1]).double().unsqueeze(-1)
    return ((c[:, 1:] - c[:, :-1]) / width).float()


def make_pair(
    lines: torch.Tensor, ratio: float, sigma: float, n: int, m: int, start: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of training pairs from ``lines`` (B, L, W), degraded along L.

    Returns ``(coarse, target)``: (B, n, W) means over ``n`` voxels of ``ratio`` px from ``start``
    (B,) px, and (B, m, W) means over the ``m`` output cells tiling the same extent, after the
    Gaussian blur ``sigma`` px along L.
    """
    cum = running_sum(gaussian_blur_lines(lines, sigma))
    dev = lines.device
    span = n * ratio
    e_in = start[:, None] + torch.arange(n + 1, device=dev, dtype=torch.float64)[None] * ratio
    e_out = start[:, None] + torch.arange(m + 1, device=dev, dtype=torch.float64)[None] * (span / m)
    return cell_means(cum, e_in), cell_means(cum, e_out)


def _lag1(lines: np.ndarray) -> float:
    """Lag-1 correlation along axis 1 of ``lines`` (N, n), each line's own mean removed."""
    d = lines - lines.mean(axis=1, keepdims=True)
    den = float((d * d).sum()) * (lines.shape[1] - 1) / lines.shape[1]
    return float((d[:, 1:] * d[:, :-1]).sum()) / den if den > 0 else 0.0


def estimate_axial_blur(
    data: np.ndarray, ratio: float, max_lines: int = 4096, seed: int = 0
) -> tuple[float, dict[str, float]]:
    """Extra axial blur (Gaussian sigma, lateral px) that makes degraded lateral lines look like z.

    ``data`` (T, Z, Y, X) with Z >= 3. The lag-1 correlation of the z lines (``Z`` voxels each) is
    matched by lateral lines of ``Z`` voxels of ``ratio`` px, blurred by ``sigma`` first; sigma is
    searched on a grid of 9 values (0 .. 2·ratio px). Returns ``(sigma, {"rho_z", "rho_lateral_0"})``.
    """
    t, nz, ny, nx = data.shape
    rng = np.random.default_rng(seed)
    k = min(t * ny * nx, max_lines)
    ti, yi, xi = rng.integers(0, t, k), rng.integers(0, ny, k), rng.integers(0, nx, k)
    rho_z = _lag1(np.asarray(data[ti, :, yi, xi], dtype=np.float64))  # (k, nz) z lines
    span = int(math.ceil(nz * ratio))
    flat = data.reshape(t * nz, ny, nx)
    pick = rng.choice(t * nz, size=min(t * nz, 16), replace=False)
    sample = torch.from_numpy(np.array(flat[np.sort(pick)], dtype=np.float32))
    planes = []
    if nx > span:  # lines along x
        planes.append(sample.transpose(1, 2))
    if ny > span:  # lines along y
        planes.append(sample)
    if not planes:
        return 0.0, {"rho_z": rho_z, "rho_lateral_0": float("nan")}
    g = torch.Generator().manual_seed(seed)
    rows = []
    for p in planes:  # (P, L, W): lines along L, a crop of 32 along W, fixed random starts
        w0 = int(torch.randint(max(1, p.shape[2] - 32 + 1), (1,), generator=g))
        start = torch.rand(p.shape[0], generator=g, dtype=torch.float64) * (p.shape[1] - nz * ratio)
        rows.append((p[:, :, w0 : w0 + 32].contiguous(), start))

    def rho(sigma: float) -> float:
        vals = []
        for lines, start in rows:
            coarse, _ = make_pair(lines, ratio, sigma, nz, nz, start)
            vals.append(coarse.permute(0, 2, 1).reshape(-1, nz).numpy().astype(np.float64))
        return _lag1(np.concatenate(vals))

    grid = np.linspace(0.0, 2.0 * ratio, 9)
    rhos = [rho(float(s)) for s in grid]
    best = float(grid[int(np.argmin(np.abs(np.asarray(rhos) - rho_z)))])
    return best, {"rho_z": rho_z, "rho_lateral_0": rhos[0]}
