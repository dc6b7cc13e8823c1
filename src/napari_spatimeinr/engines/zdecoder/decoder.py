"""The z decoder: latents on the coarse grid and a LIIF-style implicit decoder over them.

A plane is laid out ``(B, n, W)``: ``n`` coarse voxels along the axis to refine (z at render time,
the degraded lateral axis in training) and ``W`` samples along a fine lateral axis. A small 2D CNN
gives every coarse voxel a latent code (``hidden`` channels; the product of the latent with the
MLP's first layer, computed once per voxel). An output cell centred at ``p`` (coarse index units)
with side ``cell`` queries the two coarse voxels around it: for each, an MLP on
``(latent, p - i, cell)`` gives a value, and the two are blended linearly by distance (LIIF's local
ensemble, in 1D). That value is a residual over the mean-preserving spline
(:mod:`napari_spatimeinr.engines.histopolation`), projected so that the output cells inside each
coarse voxel keep its mean: mean-pooling a render returns the input, as the spline alone does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ...core.config import SpatimeINRParams
from ...core.coords import spatial_coords
from ..histopolation import cell_mean_matrix


def output_edges(n: int, m: int) -> np.ndarray:
    """Edges (m+1) of ``m`` output cells tiling ``n`` coarse voxels, in coarse index units."""
    return np.arange(m + 1, dtype=np.float64) * (n / m) - 0.5


@lru_cache(maxsize=256)
def spline_matrix(n: int, m: int) -> torch.Tensor:
    """(m, n): the mean-preserving spline from ``n`` voxels to ``m`` cells on the DESIGN.md grid."""
    p = spatial_coords(n, m / n)
    return torch.from_numpy(cell_mean_matrix(n, p, n / m).astype(np.float32))


@lru_cache(maxsize=256)
def projection_matrix(n: int, m: int) -> torch.Tensor:
    """(m, m): removes from a residual what mean-pooling back to the ``n`` voxels would see.

    ``A`` (n, m) holds the overlap of output cell j with input voxel i (voxel side 1), so
    ``A @ out`` is the mean-pooled render; ``P = I - Aᵀ(AAᵀ)⁻¹A`` makes ``A @ P @ r = 0``.
    """
    e = output_edges(n, m)
    lo = np.arange(n, dtype=np.float64)[:, None] - 0.5
    a = np.clip(np.minimum(e[None, 1:], lo + 1) - np.maximum(e[None, :-1], lo), 0, None)
    p = np.eye(m) - a.T @ np.linalg.solve(a @ a.T, a)
    return torch.from_numpy(p.astype(np.float32))


class ZDecoder(nn.Module):
    """Encoder (2D CNN, ``depth`` layers of ``width``, ``latent`` channels out) + implicit decoder.

    The decoder's MLP reads the local offset and the cell size and gives ``latent`` weights that
    are dotted with the neighbour's latent code: an MLP on (latent, offset, cell) whose latent
    enters linearly (a low-rank form, as local texture estimators do), so a query costs ``latent``
    multiply-adds per neighbour while the encoder's nonlinear features carry the content.
    """

    def __init__(
        self,
        width: int = 16,
        depth: int = 3,
        latent: int = 16,
        mlp: int = 32,
        mean_preserving: bool = True,
    ):
        super().__init__()
        #: project the residual so that mean-pooling returns the input (False: the decoder may also
        #: change the voxel means, i.e. denoise a noisy input)
        self.mean_preserving = mean_preserving
        layers: list[nn.Module] = []
        c = 1
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, padding=1, padding_mode="replicate"), nn.ReLU()]
            c = width
        layers.append(nn.Conv2d(c, latent, 3, padding=1, padding_mode="replicate"))
        self.encoder = nn.Sequential(*layers)
        self.mlp = nn.Sequential(
            nn.Linear(2, mlp), nn.ReLU(), nn.Linear(mlp, mlp), nn.ReLU(), nn.Linear(mlp, latent)
        )
        nn.init.zeros_(self.mlp[-1].weight)  # untrained: the spline exactly
        nn.init.zeros_(self.mlp[-1].bias)
        self.latent = latent
        self.halo = depth  # receptive field along the fine axis, each side

    def encode(self, coarse: torch.Tensor) -> torch.Tensor:
        """``coarse`` (B, n, W) -> latents (n, B*W, latent): one row per coarse voxel."""
        f = self.encoder(coarse[:, None])  # (B, latent, n, W)
        return f.permute(2, 0, 3, 1).reshape(f.shape[2], -1, self.latent)

    def residual(self, feat: torch.Tensor, n: int, m: int) -> torch.Tensor:
        """Residual (m, B*W) on the ``m`` cells of the grid from latents ``feat`` (n, B*W, latent).

        Output cells are grouped by the coarse voxel ``g = floor(p)`` at or left of their centre
        (``-1 .. n-1``); a group's cells all query voxels ``g`` and ``g + 1`` (clamped at the ends),
        so the MLP's weights (``cells x 2·latent`` per group) meet the two latents in one batched
        matrix product instead of gathering a latent per output cell.
        """
        pos = torch.from_numpy(spatial_coords(n, m / n).astype(np.float32)).to(feat.device)
        g = torch.floor(pos)
        frac = pos - g
        parts = []
        for k, w in ((0, 1.0 - frac), (1, frac)):
            idx = (g + k).clamp(0, n - 1)
            q = torch.stack([pos - idx, torch.full_like(pos, n / m)], dim=1)  # (m, 2)
            parts.append(self.mlp(q) * w[:, None])  # (m, latent), blend weight folded in
        coef = torch.cat(parts, dim=1)  # (m, 2·latent)
        gi, j, per = _groups(n, m)
        table = coef.new_zeros(n + 1, per, coef.shape[1])
        table[gi, j] = coef
        padded = torch.cat([feat[:1], feat, feat[-1:]], dim=0)  # voxel -1 and n repeat the ends
        pair = torch.cat([padded[:-1], padded[1:]], dim=2)  # (n+1, B*W, 2·latent): g and g+1
        out = torch.bmm(pair, table.transpose(1, 2))  # (n+1, B*W, per)
        return out.permute(0, 2, 1).reshape((n + 1) * per, -1)[gi * per + j]

    def forward(self, coarse: torch.Tensor, m: int) -> torch.Tensor:
        """``coarse`` (B, n, W) rendered on the ``m`` cells of the DESIGN.md grid: (B, m, W)."""
        b, n, w = coarse.shape
        flat = coarse.permute(1, 0, 2).reshape(n, b * w)
        s = spline_matrix(n, m).to(coarse.device)
        p = projection_matrix(n, m).to(coarse.device)
        res = self.residual(self.encode(coarse), n, m)
        out = s @ flat + (p @ res if self.mean_preserving else res)
        return out.reshape(m, b, w).permute(1, 0, 2)


@lru_cache(maxsize=256)
def _groups(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For each of ``m`` output cells: its group (coarse voxel at or left of its centre, + 1) and
    its rank in the group; and the largest group size."""
    g = np.floor(spatial_coords(n, m / n)).astype(np.int64) + 1
    start = np.searchsorted(g, g, side="left")
    j = np.arange(m) - start
    return torch.from_numpy(g), torch.from_numpy(j), int(j.max()) + 1


@lru_cache(maxsize=256)
def classical_matrix(n: int, m: int, order: int) -> torch.Tensor:
    """(m, n): B-spline interpolation of ``order`` (0 nearest, 1 linear, 3 cubic) at the centres of
    ``m`` cells on the DESIGN.md grid, as ``scipy.ndimage.map_coordinates(mode="nearest")``."""
    from scipy import ndimage

    p = spatial_coords(n, m / n)
    cols = [
        ndimage.map_coordinates(np.eye(n)[k], [p], order=order, mode="nearest") for k in range(n)
    ]
    return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32))


def make_decoder(params: SpatimeINRParams, mean_preserving: bool = True) -> ZDecoder:
    """The z decoder of ``params`` (``mean_preserving``: rendered voxels keep the input's means)."""
    return ZDecoder(
        params.spatial_width,
        params.spatial_depth,
        params.spatial_hidden,
        mean_preserving=mean_preserving,
    )
