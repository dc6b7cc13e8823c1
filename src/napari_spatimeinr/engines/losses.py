"""Training losses (seed 001 eqs. 11-13): reconstruction MSE and cycle consistency."""

from __future__ import annotations

import torch


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred.float() - target.float()) ** 2)


def cycle_loss(sub_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean-downsampling D of a rendered higher-resolution patch against the measured voxels.

    ``sub_values`` (N, S) are the renders at the S sub-voxels of each measured voxel; their mean is
    the downsampled value compared with ``target`` (N,).
    """
    return mse(sub_values.mean(dim=1), target)


def psnr(mse_value: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a mean squared error on data of ``data_range``."""
    import math

    return float("inf") if mse_value <= 0 else 10.0 * math.log10(data_range**2 / mse_value)
