"""NeRF positional encoding (seed 001 appendix J, eq. 25)."""

from __future__ import annotations

import math

import torch


def encoded_dim(dims: int, frequencies: int) -> int:
    """Width of :func:`positional_encoding` for ``dims`` coordinates (input included)."""
    return dims * (1 + 2 * frequencies)


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[x, sin(2^k pi x), cos(2^k pi x) for k < L]`` along the last axis.

    ``x`` is (..., D) with coordinates in [-1, 1]; the result is (..., D * (1 + 2L)).
    """
    if frequencies == 0:
        return x
    freqs = (2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype)) * math.pi
    ang = x[..., None, :] * freqs[:, None]  # (..., L, D)
    enc = torch.stack([torch.sin(ang), torch.cos(ang)], dim=-2).flatten(-3)  # (..., L*2*D)
    return torch.cat([x, enc], dim=-1)
