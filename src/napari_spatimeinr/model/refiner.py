"""The refinement CNN of the motion engine (the ``fast`` preset).

Input: one measured frame warped by optical flow to another instant (see
:mod:`napari_spatimeinr.motion`), on the input grid. Output: that warped frame plus a learned
residual (the expected frame at that instant: less noise, warping errors hedged). The last layer
starts at zero, so an untrained refiner returns the warped frame exactly, and rendering then equals
motion-compensated interpolation.
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 1  # one warped frame


class Refiner(nn.Module):
    def __init__(self, width: int, depth: int, z_kernel: int = 3):
        """``depth`` 3D convolutions (``width`` channels, ReLU between); ``z_kernel`` 1 for 2D stacks."""
        super().__init__()
        k = (z_kernel, 3, 3)
        pad = (z_kernel // 2, 1, 1)
        layers: list[nn.Module] = []
        c_in = IN_CHANNELS
        for _ in range(depth - 1):
            layers += [nn.Conv3d(c_in, width, k, padding=pad), nn.ReLU(inplace=True)]
            c_in = width
        last = nn.Conv3d(c_in, 1, k, padding=pad)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)
        # channels-last: torch's CPU 3D convolutions run 1.4-1.8x faster in this layout
        # (benchmarks/engine_speed.py; also on the GPU's cuDNN)
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, Z, Y, X) -> (B, Z, Y, X): the input plus the residual."""
        residual = self.body(x.contiguous(memory_format=torch.channels_last_3d))
        return x[:, 0] + residual[:, 0]
