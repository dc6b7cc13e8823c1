"""SpatimeINR network: encoder + latent lookup + positional encoding + field MLP + 4D rendering.

Coordinates handed to :meth:`SpatimeINRNet.query` are in the *coarse* grid the encoder saw (index
units of that grid): spatial ``p = (z, y, x)`` relative to the encoded block, and ``f`` the fraction
of the way from window frame 1 to window frame 2 (the encoded window holds frames i-1, i, i+1, i+2 of
the coarse sequence, time as channels). The same network serves training (coarse = the input degraded
further) and rendering (coarse = the input), which is what makes the self-supervision transfer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...core.config import SpatimeINRParams
from .encoder import Encoder
from .encoding import encoded_dim, positional_encoding
from .field import FieldMLP
from .radial import render
from .sampler import hypercube_offsets, unit_radius

WINDOW = 4  # frames per encoded window: i-1, i, i+1, i+2 (the support of a cubic in time)


def window_frames(i: int, n_frames: int) -> list[int]:
    """Indices of the window around interval ``[i, i+1]`` (clamped to the sequence)."""
    return [min(max(j, 0), n_frames - 1) for j in range(i - 1, i + WINDOW - 1)]


class SpatimeINRNet(nn.Module):
    def __init__(self, params: SpatimeINRParams):
        super().__init__()
        self.params = params
        self.encoder = Encoder(
            WINDOW,
            params.encoder_features,
            params.encoder_groups,
            params.encoder_blocks,
            params.latent_dim,
        )
        in_dim = encoded_dim(4, params.pe_frequencies) + params.latent_dim
        self.field = FieldMLP(in_dim, params.mlp_width, params.mlp_depth, zero_init=params.residual)

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """(WINDOW, Z, Y, X) -> latent (d, Z, Y, X)."""
        return self.encoder(window[None])[0]

    def query(
        self,
        latent: torch.Tensor,
        window: torch.Tensor,
        p: torch.Tensor,
        f: torch.Tensor,
        spacing: torch.Tensor,
        jitter: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Rendered values (N,) at points ``p`` (N, 3) and time fractions ``f`` (N,).

        ``spacing`` (4,) is the output voxel's side (t, z, y, x) in coarse units (the hypercube).
        """
        n = p.shape[0]
        off = hypercube_offsets(self.params.hypercube_n, spacing, n, jitter, generator)
        m = off.shape[1]
        r = unit_radius(off, spacing)  # (N, M)
        ft = (f[:, None] + off[..., 0]).clamp(-0.5, 1.5)  # (N, M)
        ps = p[:, None, :] + off[..., 1:]  # (N, M, 3)
        shape = torch.tensor(latent.shape[1:], device=p.device)
        idx = torch.minimum(torch.clamp(torch.round(ps), min=0), (shape - 1).to(ps.dtype)).long()
        flat = (idx[..., 0] * shape[1] + idx[..., 1]) * shape[2] + idx[..., 2]
        z = latent.reshape(latent.shape[0], -1).t()[flat.reshape(-1)]  # (N*M, d)
        local = torch.cat([2.0 * ft[..., None] - 1.0, 2.0 * (ps - idx)], dim=-1).reshape(-1, 4)
        x = torch.cat([positional_encoding(local, self.params.pe_frequencies), z], dim=-1)
        c, sigma = self.field(x)
        c, sigma = c.reshape(n, m), sigma.reshape(n, m)
        if self.params.residual:
            c = c + linear_base(window, ps.reshape(-1, 3), ft.reshape(-1)).reshape(n, m)
        return render(c, sigma, r)


def linear_base(window: torch.Tensor, p: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Linear interpolation (trilinear in space, linear between window frames 1 and 2 in time)."""
    frames = window[1:3].to(p.dtype)  # (2, Z, Y, X)
    size = torch.tensor(frames.shape[1:], device=p.device, dtype=p.dtype)
    g = 2.0 * p / (size - 1).clamp(min=1) - 1.0
    g = g.flip(-1).reshape(1, 1, 1, -1, 3)  # grid_sample wants (x, y, z)
    v = F.grid_sample(frames[None], g, mode="bilinear", padding_mode="border", align_corners=True)
    v = v.reshape(2, -1)
    return (1.0 - f) * v[0] + f * v[1]
