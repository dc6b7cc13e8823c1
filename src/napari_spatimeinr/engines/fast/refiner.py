"""The refinement CNN of the motion engine (the ``fast`` preset).

Input: one measured frame warped by optical flow to another instant (see
:mod:`napari_spatimeinr.engines.fast.motion`), on the input grid. Output: that warped frame plus a learned
residual (the expected frame at that instant: less noise, warping errors hedged). The last layer
starts at zero, so an untrained refiner returns the warped frame exactly, and rendering then equals
motion-compensated interpolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...core.config import SpatimeINRParams

IN_CHANNELS = 1  # one warped frame


class Refiner(nn.Module):
    def __init__(self, width: int, depth: int, z_kernel: int = 3):
        """``depth`` 3D convolutions (``width`` channels, ReLU between); ``z_kernel`` 1 for 2D stacks."""
        super().__init__()
        self.width, self.depth = width, depth
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
        self.z_kernel = z_kernel
        # channels-last: torch's CPU 3D convolutions run 1.4-1.8x faster in this layout
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, Z, Y, X) -> (B, Z, Y, X): the input plus the residual."""
        if self.z_kernel == 1:
            return x[:, 0] + self._planes(x)
        residual = self.body(x.contiguous(memory_format=torch.channels_last_3d))
        return x[:, 0] + residual[:, 0]

    def _planes(self, x: torch.Tensor) -> torch.Tensor:
        """The residual of a 2D refiner (kernels 1×3×3) as 2D convolutions of the z planes.

        The same weights and result as the 3D layers, but torch's CPU ``conv3d`` with a depth of 1
        has a slow path at batch size 1 (0.62 s against 0.09 s at batch 2 for one 256 × 256 plane).
        """
        b, _, n_z, n_y, n_x = x.shape
        h = x.permute(0, 2, 1, 3, 4).reshape(b * n_z, 1, n_y, n_x)
        h = h.contiguous(memory_format=torch.channels_last)
        for layer in self.body:
            if isinstance(layer, nn.Conv3d):
                h = F.conv2d(h, layer.weight[:, :, 0], layer.bias, padding=1)
            else:
                h = layer(h)
        return h.reshape(b, n_z, n_y, n_x)


class ChannelRefiner(nn.Module):
    """One refiner for the ``channels`` channels of a stack (a multi-channel model).

    The convolutions are shared: every training step improves the refiner of every channel. Each
    channel has its own scale and shift of the first layer's features and of the residual (a
    feature-wise affine conditioning), so that a dim, noisy membrane and a bright nucleus can
    differ in contrast and in how much they are corrected. Both are affine maps of a convolution's
    output, so :meth:`bake` folds channel ``k``'s into the convolutions' weights: a plain
    :class:`Refiner`, the same function to rounding, which is what each channel's model stores
    and renders with.
    """

    def __init__(self, width: int, depth: int, z_kernel: int, channels: int):
        super().__init__()
        self.base = Refiner(width, depth, z_kernel)
        convs = self._convs(self.base)
        self.scale = nn.Parameter(torch.ones(channels, convs[0].out_channels))
        self.shift = nn.Parameter(torch.zeros(channels, convs[0].out_channels))
        self.out_scale = nn.Parameter(torch.ones(channels))
        self.out_shift = nn.Parameter(torch.zeros(channels))
        self.channels = channels

    @staticmethod
    def _convs(net: Refiner) -> list[nn.Conv3d]:
        return [layer for layer in net.body if isinstance(layer, nn.Conv3d)]

    def forward(self, x: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """(B, 1, Z, Y, X) frames of channels ``channel`` (B,) -> (B, Z, Y, X)."""
        b, _, n_z, n_y, n_x = x.shape
        planes = self.base.z_kernel == 1
        if planes:  # as Refiner._planes: 2D convolutions of the z planes
            h = x.permute(0, 2, 1, 3, 4).reshape(b * n_z, 1, n_y, n_x)
            h = h.contiguous(memory_format=torch.channels_last)
            ch = channel.repeat_interleave(n_z)
        else:
            h = x.contiguous(memory_format=torch.channels_last_3d)
            ch = channel
        convs = self._convs(self.base)
        extra = (1,) * (h.ndim - 2)
        for layer in self.base.body:
            if not isinstance(layer, nn.Conv3d):
                h = layer(h)
                continue
            if planes:
                h = F.conv2d(h, layer.weight[:, :, 0], layer.bias, padding=1)
            else:
                h = layer(h)
            if layer is convs[0]:
                h = h * self.scale[ch].view(len(ch), -1, *extra) + self.shift[ch].view(
                    len(ch), -1, *extra
                )
            if layer is convs[-1]:
                h = h * self.out_scale[ch].view(-1, 1, *extra) + self.out_shift[ch].view(
                    -1, 1, *extra
                )
        if planes:
            return x[:, 0] + h.reshape(b, n_z, n_y, n_x)
        return x[:, 0] + h[:, 0]

    def bake(self, k: int) -> Refiner:
        """Channel ``k``'s refiner as a plain :class:`Refiner` (its affine maps folded in)."""
        base = self.base
        out = Refiner(base.width, base.depth, base.z_kernel)
        out.load_state_dict(base.state_dict())
        first, last = self._convs(out)[0], self._convs(out)[-1]
        with torch.no_grad():
            g = self.scale[k].detach()
            first.weight.mul_(g.view(-1, 1, 1, 1, 1))
            first.bias.mul_(g).add_(self.shift[k].detach())
            s = self.out_scale[k].detach()
            last.weight.mul_(s)
            last.bias.mul_(s).add_(self.out_shift[k].detach())
        return out


def make_channel_refiner(
    params: SpatimeINRParams, shape: tuple[int, ...], channels: int
) -> ChannelRefiner:
    """The shared refiner of a ``channels``-channel stack of TZYX ``shape`` (:class:`ChannelRefiner`)."""
    z_kernel = 3 if shape[1] > 1 else 1
    return ChannelRefiner(params.refine_width, params.refine_depth, z_kernel, channels)


def make_refiner(params: SpatimeINRParams, shape: tuple[int, ...]) -> Refiner:
    """The motion engine's refinement CNN for a TZYX input of ``shape`` (2D kernels when Z == 1)."""
    return Refiner(params.refine_width, params.refine_depth, z_kernel=3 if shape[1] > 1 else 1)
