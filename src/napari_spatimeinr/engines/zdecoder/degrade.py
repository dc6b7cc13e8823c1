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


#: bounds of the fitted contrast gain of the degraded lines
GAIN_RANGE = (0.5, 8.0)


def _lag1_content(lines: np.ndarray) -> float:
    """:func:`_lag1` of the lines (N, n) whose variance is at least the median (lines with content:
    on sparse objects, background lines would only measure the noise)."""
    v = lines.var(axis=1)
    return _lag1(lines[v >= np.median(v)])


def lateral_planes(data, index: np.ndarray) -> np.ndarray:
    """Planes ``index`` of a (T, Z, Y, X) stack seen as T·Z lateral planes (``data.reshape(T·Z, Y,
    X)[index]``), read without reshaping it (a lazily read stored input has no reshape)."""
    index = np.asarray(index, dtype=np.int64)
    nz = int(data.shape[1])
    return np.asarray(data[index // nz, index % nz])


def estimate_axial_blur(
    data: np.ndarray,
    ratio: float,
    max_lines: int = 16384,
    seed: int = 0,
    noise: tuple[float, float] = (0.0, 0.0),
    fit_gain: bool = True,
) -> tuple[float, dict[str, float]]:
    """Extra axial blur (Gaussian sigma, lateral px) that makes degraded lateral lines look like z.

    ``data`` (T, Z, Y, X) with Z >= 3. The lag-1 correlation of windows of ``n`` consecutive z
    voxels is matched by lateral lines of ``n`` voxels of ``ratio`` px, blurred by ``sigma`` first
    (``n`` = Z, or as many voxels as a lateral line holds, at least 3); on both sides only the
    lines with content (variance at least the median) count. ``noise`` (``a, b`` of
    :func:`estimate_noise`) is added to the degraded lines as training adds it (:func:`add_noise`),
    so that both sides carry a z voxel's noise. ``rho(sigma)`` is evaluated on a grid (0 .. 2·ratio
    px, 17 values) and the crossing interpolated.

    A normalized blur keeps the mass of a profile, not its peak: a point seen along z (a long
    axial profile of the PSF's peak) is brighter than the same point's lateral profile blurred to
    that length. So with ``fit_gain`` a contrast ``gain`` is fitted too: the degraded lines'
    deviations from the background (5th percentile) are scaled so that their signal variance
    (noise variance taken off) equals that of the z lines; sigma is first matched without noise,
    then gain and sigma are refitted in turn (2 rounds). Where no sigma reaches the z lines'
    correlation, the closest is taken. About 1 on extended objects (nuclei), several on sparse points.

    A noise model claiming more than 80 % of the z lines' variance is scaled down to that
    (``noise_scale``; training uses the scaled model).

    Returns ``(sigma, {"rho_z", "rho_lateral_0", "voxels", "gain", "background",
    "noise_scale"})``; sigma 0 and gain 1 when no lateral line holds 3 voxels.
    """
    t, nz, ny, nx = data.shape
    rng = np.random.default_rng(seed)
    longest = max(ny, nx)
    n = int(min(nz, math.floor((longest - 1) / ratio)))
    if n < 3 or nz < 3:
        nan = float("nan")
        return 0.0, {"rho_z": nan, "rho_lateral_0": nan, "voxels": float(n), "gain": 1.0}
    k = min(t * ny * nx, max_lines)
    ti, yi, xi = rng.integers(0, t, k), rng.integers(0, ny, k), rng.integers(0, nx, k)
    zl = np.asarray(data[ti, :, yi, xi], dtype=np.float64)  # (k, nz) z lines
    z0 = rng.integers(0, nz - n + 1, k)
    zl = zl[np.arange(k)[:, None], z0[:, None] + np.arange(n)[None]]
    rho_z = _lag1_content(zl)
    span = n * ratio
    pick = rng.choice(t * nz, size=min(t * nz, 16), replace=False)
    sample = torch.from_numpy(np.array(lateral_planes(data, np.sort(pick)), dtype=np.float32))
    planes = []
    if nx > span:  # lines along x
        planes.append(sample.transpose(1, 2))
    if ny > span:  # lines along y
        planes.append(sample)
    g = torch.Generator().manual_seed(seed)
    rows = []
    crop = max(32, max_lines // 4 // (len(planes) * max(1, len(sample))))
    for p in planes:  # (P, L, W): lines along L, a crop along W, fixed random starts
        w0 = int(torch.randint(max(1, p.shape[2] - crop + 1), (1,), generator=g))
        start = torch.rand(p.shape[0], generator=g, dtype=torch.float64) * (p.shape[1] - span)
        rows.append((p[:, :, w0 : w0 + crop].contiguous(), start))

    def noise_var(v: np.ndarray, share: float) -> float:
        return float(np.mean(np.clip(noise[0] * v + noise[1], 0, None))) * share

    def spread(v: np.ndarray, share: float) -> float:
        """Signal variance along the lines (each line's own mean removed), the noise taken off."""
        return float(((v - v.mean(axis=1, keepdims=True)) ** 2).mean()) - noise_var(v, share)

    background = float(np.percentile(sample.numpy(), 5))
    # the noise model may claim more variance than the z lines hold (noise correlated along z, or
    # lateral noise the z voxels do not have): then it is scaled down to 80 % of their variance
    total_z = spread(zl, 0.0)
    noise_scale = min(1.0, 0.8 * total_z / max(noise_var(zl, 1.0), 1e-12)) if total_z > 0 else 0.0
    noise = (noise[0] * noise_scale, noise[1] * noise_scale)
    signal_z = spread(zl, 1.0)

    def degraded(sigma: float, gain: float, noisy: bool) -> np.ndarray:
        vals = []
        gn = torch.Generator().manual_seed(seed + 1)
        for lines, start in rows:
            coarse, _ = make_pair(lines, ratio, sigma, n, n, start)
            coarse = background + gain * (coarse - background)
            if noisy:
                coarse = add_noise(coarse, noise[0], noise[1], ratio, gn)
            vals.append(coarse.permute(0, 2, 1).reshape(-1, n).numpy().astype(np.float64))
        return np.concatenate(vals)

    def match_sigma(gain: float, noisy: bool = True) -> tuple[float, float]:
        grid = np.linspace(0.0, 2.0 * ratio, 17)
        rhos = np.asarray([_lag1_content(degraded(float(s), gain, noisy)) for s in grid])
        above = np.nonzero(rhos >= rho_z)[0]
        if len(above) == 0:  # never as correlated as z: the closest
            return float(grid[int(np.argmin(np.abs(rhos - rho_z)))]), float(rhos[0])
        i = int(above[0])
        if i == 0:
            return 0.0, float(rhos[0])
        r0, r1 = rhos[i - 1], rhos[i]
        frac = (rho_z - r0) / (r1 - r0) if r1 > r0 else 1.0
        return float(grid[i - 1] + frac * (grid[i] - grid[i - 1])), float(rhos[0])

    def match_gain(sigma: float) -> float:
        lat = spread(degraded(sigma, 1.0, False), 1.0 / ratio)
        if lat <= 0 or signal_z <= 0:
            return 1.0
        return float(np.clip(math.sqrt(signal_z / lat), GAIN_RANGE[0], GAIN_RANGE[1]))

    gain = 1.0
    if fit_gain:  # the shape without noise first, then contrast and blur in turn (two rounds)
        sigma, rho0 = match_sigma(gain, noisy=False)
        for _ in range(2):
            gain = match_gain(sigma)
            sigma, rho0 = match_sigma(gain)
    else:
        sigma, rho0 = match_sigma(gain)
    stats = {
        "rho_z": rho_z,
        "rho_lateral_0": rho0,
        "voxels": float(n),
        "gain": gain,
        "background": background,
        "noise_scale": noise_scale,
    }
    return sigma, stats


def estimate_noise(
    data: np.ndarray, max_planes: int = 16, seed: int = 0, bins: int = 16
) -> tuple[float, float]:
    """Poisson–Gaussian noise of the stack's voxels: ``variance = a·I + b`` (intensity units of
    ``data``), fitted on its lateral planes.

    Each pixel minus the mean of its 4 lateral neighbours leaves the noise times ``sqrt(1 + 1/4)``
    plus the signal's Laplacian; minus the mean of its 4 diagonal neighbours, the same noise and
    twice that Laplacian: twice the first square minus the second keeps the noise. Its variance
    (the mean, which stays unbiased for a difference of squares) is taken per bin of the local
    mean intensity and ``a >= 0, b`` fitted by
    weighted least squares (``b`` may be negative: a camera offset). Structure sharper than a pixel
    counts as noise (an upper bound). Use :func:`noise_variance`, which keeps the variance >= 0.
    """
    t, nz, ny, nx = data.shape
    if ny < 3 or nx < 3:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(t * nz, size=min(t * nz, max_planes), replace=False))
    p = np.asarray(lateral_planes(data, pick), dtype=np.float64)
    c = p[:, 1:-1, 1:-1]
    nb = 0.25 * (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:])
    dg = 0.25 * (p[:, :-2, :-2] + p[:, 2:, 2:] + p[:, :-2, 2:] + p[:, 2:, :-2])
    # both residuals carry 1.25 x the noise variance; a smooth signal's Laplacian shows twice as
    # much in the diagonal one (neighbours sqrt(2) further): 2·r1² - r2² keeps the noise alone
    res2 = ((2 * (c - nb) ** 2 - (c - dg) ** 2) / 1.25).reshape(-1)
    mu = (0.2 * c + 0.8 * nb).reshape(-1)
    edges = np.unique(np.quantile(mu, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0, max(float(res2.mean()), 0.0)
    which = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, len(edges) - 2)
    xs, ys, ws = [], [], []
    for k in range(len(edges) - 1):
        sel = which == k
        if sel.sum() < 50:
            continue
        xs.append(float(mu[sel].mean()))
        ys.append(max(float(res2[sel].mean()), 0.0))
        ws.append(float(np.sqrt(sel.sum())))
    if not xs:
        return 0.0, max(float(res2.mean()), 0.0)
    x, y, w = np.asarray(xs), np.asarray(ys), np.asarray(ws)
    design = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
    a, b = np.linalg.lstsq(design, y * w, rcond=None)[0]
    if a < 0 or len(xs) < 2:  # no signal dependence seen: a constant variance
        return 0.0, float(np.average(y, weights=w))
    return float(a), float(b)


def noise_variance(intensity: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``a·I + b`` at ``intensity``, never below 0."""
    return (a * intensity + b).clamp(min=0)


def add_noise(
    coarse: torch.Tensor, a: float, b: float, ratio: float, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Training inputs (means over ``ratio`` px of noisy lateral lines, so with ``1/ratio`` of the
    pixel noise variance) brought to the noise of a real z voxel (one sample: ``a·I + b``)."""
    if a <= 0 and b <= 0:
        return coarse
    var = noise_variance(coarse, a, b) * max(0.0, 1.0 - 1.0 / max(ratio, 1.0))
    noise = torch.randn(coarse.shape, generator=gen, dtype=coarse.dtype)
    return coarse + noise * var.sqrt()
