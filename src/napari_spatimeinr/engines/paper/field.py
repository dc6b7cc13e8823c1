"""The conditioned field MLP f_theta (seed 001 §4.2): (encoded position, latent) -> (c, sigma)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FieldMLP(nn.Module):
    """``depth`` hidden ReLU layers of ``width``; the input is re-injected after layer ``skip``.

    Returns ``(c, sigma)``, each (N,): ``c`` unbounded (intensity or a residual), ``sigma >= 0``
    (softplus). With ``zero_init`` the output layer starts at zero, so an untrained field adds
    nothing to a residual base.
    """

    def __init__(self, in_dim: int, width: int, depth: int, skip: int = 4, zero_init: bool = False):
        super().__init__()
        self.skip = skip if 0 < skip < depth else None
        layers = []
        d = in_dim
        for i in range(depth):
            layers.append(nn.Linear(d, width))
            d = width + (in_dim if self.skip is not None and i + 1 == self.skip else 0)
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(d, 2)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if self.skip is not None and i + 1 == self.skip:
                h = torch.cat([h, x], dim=-1)
        o = self.out(h)
        return o[..., 0], F.softplus(o[..., 1])
