"""RCAN-style 3D encoder (seed 001 §4.2): time as channels -> a latent code per voxel.

A 3D convolution lifts the frames (channels) to ``features`` channels, residual groups of RCAB blocks
(residual channel-attention blocks) refine them, and a 1x1x1 convolution maps them to ``latent_dim``
channels squashed by ``pi * tanh`` (bounded latents, as in the paper's code base).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool -> bottleneck -> sigmoid channel gates."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool3d(1),
            nn.Conv3d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x)


class RCAB(nn.Module):
    """Residual channel-attention block: conv-ReLU-conv-CA plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1),
            ChannelAttention(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``blocks`` RCABs followed by a conv, with a long skip connection."""

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(channels) for _ in range(blocks)], nn.Conv3d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """(B, frames, Z, Y, X) -> (B, latent_dim, Z, Y, X) latent codes in [-pi, pi]."""

    def __init__(self, frames: int, features: int, groups: int, blocks: int, latent_dim: int):
        super().__init__()
        self.head = nn.Conv3d(frames, features, 3, padding=1)
        self.groups = nn.Sequential(*[ResidualGroup(features, blocks) for _ in range(groups)])
        self.tail = nn.Conv3d(features, features, 3, padding=1)
        self.out = nn.Conv3d(features, latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.tail(self.groups(h))
        return math.pi * torch.tanh(self.out(h))
