"""4D radial-transmittance rendering of a hypercube's samples (seed 001 appendix J, eqs. 27-34).

Samples are ordered by their distance r from the query (in units of the cube side, so the corner is
at r_max = 1). The interval [0, r_max] is split into M equal sub-intervals (dr = r_max / M, the
paper's discretization; using the gaps between sorted radii instead degenerates when samples share a
radius, which the regular n = 2 grid always does), and::

    alpha_i = 1 - exp(-sigma_i dr)
    T_i     = exp(-omega_3 sum_{j <= i} sigma_j r_j^3 dr)       (T_0 = 1)
    C       = omega_3 sum_i T_{i-1} alpha_i c_i,     omega_3 = 2 pi^2
"""

from __future__ import annotations

import math

import torch

OMEGA3 = 2.0 * math.pi**2
R_MAX = 1.0


def radial_weights(sigma: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Weights (..., M) so that ``C = sum(weights * c)``; ``sigma`` and ``r`` are (..., M)."""
    m = sigma.shape[-1]
    dr = R_MAX / m
    order = torch.argsort(r, dim=-1, stable=True)
    s = torch.gather(sigma, -1, order)
    rs = torch.gather(r, -1, order)
    alpha = 1.0 - torch.exp(-s * dr)
    acc = torch.cumsum(s * rs**3 * dr, dim=-1)
    t_prev = torch.exp(-OMEGA3 * torch.cat([torch.zeros_like(acc[..., :1]), acc[..., :-1]], -1))
    w_sorted = OMEGA3 * t_prev * alpha
    return torch.zeros_like(w_sorted).scatter(-1, order, w_sorted)


def render(c: torch.Tensor, sigma: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Rendered value (...) of samples with colours ``c``, densities ``sigma``, radii ``r``."""
    if c.shape[-1] == 1:  # a single sample: the hypercube collapses to the query itself
        return c[..., 0]
    return (radial_weights(sigma, r) * c).sum(-1)
