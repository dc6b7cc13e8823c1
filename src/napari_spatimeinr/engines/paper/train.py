"""Training of the paper's engine: the 4D implicit neural representation (seed 001).

Self-supervision by further degradation (:mod:`.examples`): each step draws an example, renders its
targets through the encoder, the field MLP and 4D hypercube rendering, and learns from the MSE and
the cycle consistency (:mod:`napari_spatimeinr.engines.losses`), in the shared loop
(:func:`napari_spatimeinr.engines.loop.run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ...core.config import TrainConfig
from ...core.device import torch_device
from ...core.progress import Progress
from ...store.model_dir import ModelDir
from .. import loop
from ..loop import holdout_mask
from ..losses import cycle_loss, mse, psnr
from ..presets import resolve_params
from .examples import Example, eligible_axes, gather_window, keep_targets, sample_example
from .network import SpatimeINRNet

VALIDATE_STEPS = 25  # steps between held-out PSNR measurements (step-based: reproducible)
N_VALIDATION = 4  # validation examples (held-out voxels)


def forward(
    net: SpatimeINRNet,
    data: torch.Tensor,
    ex: Example,
    jitter: bool,
    gen: torch.Generator | None,
    cycle: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predictions at ``ex``'s targets and, with ``cycle``, the sub-voxel renders (N, 2)."""
    dev = data.device
    window = gather_window(data, ex)
    latent = net.encode(window)
    p, f, sp = ex.p.to(dev), ex.f.to(dev), ex.spacing.to(dev)
    pred = net.query(latent, window, p, f, sp, jitter=jitter, generator=gen)
    if not cycle:
        return pred, None
    # two half-voxels along the degraded axis, each rendered with a half-size hypercube
    half = sp.clone()
    half[ex.axis] = sp[ex.axis] / 2
    shift = torch.zeros(4, device=dev)
    shift[ex.axis] = sp[ex.axis] / 4
    subs = []
    for sgn in (-1.0, 1.0):
        ps = p + sgn * shift[1:]
        fs = f + sgn * shift[0]
        subs.append(net.query(latent, window, ps, fs, half, jitter=jitter, generator=gen))
    return pred, torch.stack(subs, dim=1)


def _validation(shape, params, mask: torch.Tensor, seed: int) -> list[Example]:
    """Fixed examples whose targets are held-out voxels only (about 2% of the drawn targets)."""
    g = torch.Generator().manual_seed(seed + 104729)
    axes = eligible_axes(shape, params)
    out = []
    for _ in range(N_VALIDATION):
        ex = keep_targets(sample_example(shape, params, g, 50 * 512, axes), mask)
        ex.target, ex.p, ex.f = ex.target[:512], ex.p[:512], ex.f[:512]
        out.append(ex)
    return out


def _validate(net, data, examples: list[Example]) -> float | None:
    se, n = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            if len(ex.target) == 0:
                continue
            pred, _ = forward(net, data, ex, False, None, False)
            t = ex.target.to(data.device)
            truth = data[t[:, 0], t[:, 1], t[:, 2], t[:, 3]]
            se += float(((pred.float() - truth) ** 2).sum())
            n += len(t)
    return psnr(se / n) if n else None


def train(model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]) -> Iterator[Progress]:
    """Train (or resume training of) the paper's 4D INR in ``model_dir``."""
    t_start = time.perf_counter()
    params = resolve_params(config)
    device = torch_device(config.device)
    shape = tuple(int(s) for s in model_dir.shape)
    mask_np = holdout_mask(shape, config.seed)
    torch.manual_seed(config.seed)
    axes = eligible_axes(shape, params)
    data = torch.from_numpy(np.array(model_dir.input, dtype=np.float32)).to(device)
    train_mask = torch.from_numpy(~mask_np)
    val = _validation(shape, params, torch.from_numpy(mask_np), config.seed)
    net = SpatimeINRNet(params).to(device)

    def step_loss(gen: torch.Generator) -> torch.Tensor:
        ex = keep_targets(sample_example(shape, params, gen, params.batch_size, axes), train_mask)
        t = ex.target.to(device)
        truth = data[t[:, 0], t[:, 1], t[:, 2], t[:, 3]]
        pred, subs = forward(net, data, ex, True, gen, params.cycle_weight > 0)
        loss = mse(pred, truth)
        if subs is not None:
            loss = loss + params.cycle_weight * cycle_loss(subs, truth)
        return loss

    def validate() -> float | None:
        return _validate(net, data, val)

    yield from loop.run(
        model_dir,
        config,
        params,
        net,
        step_loss,
        validate,
        stop,
        device=device,
        validate_every=VALIDATE_STEPS,
        t_start=t_start,
    )
