"""Training of the fast engine: optical flow between neighbouring frames, then the refiner.

The flows are computed (or read back) first, within :data:`.task.FLOW_SHARE` of the time limit;
the refiner then learns from the stack's own neighbour pairs (:mod:`.task`) in the shared loop
(:func:`napari_spatimeinr.engines.loop.run`). :func:`train_with_calibration` adds the uncertainty
calibration on held-out frames at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator

import torch

from ...core.config import SpatimeINRParams, TrainConfig
from ...core.device import torch_device
from ...core.progress import Progress
from ...store.model_dir import ModelDir
from ...store.records import training_stacks
from .. import loop
from ..loop import PackedMask
from ..presets import resolve_params
from ..zdecoder.train import train_with_spatial
from . import task as motion_task
from . import uncertainty
from .refiner import make_refiner
from .render import MotionRenderer

#: share of the time limit kept at least for the uncertainty calibration at the end of a training
CALIBRATION_SHARE = 0.03
#: cost of the calibration (two held-out frames predicted, their features, the fit), measured on
#: tz_yeast (17 x 144 x 224 frames: 1.6 s, 0.5 s of it a first import of scipy.stats) and on a
#: 100 x 512 x 512 frame (181 s for 26 M voxels with another job on the machine): seconds, plus
#: seconds per voxel of one frame
CALIBRATION_FIXED_S = 1.5
CALIBRATION_S_PER_VOXEL = 5.0e-6
#: the calibration never takes more than this share of a time limit
CALIBRATION_MAX_SHARE = 0.25


def calibration_seconds(shape: tuple[int, ...]) -> float:
    """The estimated cost of the uncertainty calibration of a ``shape`` (T, Z, Y, X) stack."""
    frame = math.prod(int(s) for s in shape[1:])
    return CALIBRATION_FIXED_S + CALIBRATION_S_PER_VOXEL * frame


def calibration_reserve(shape: tuple[int, ...], time_limit: float) -> float:
    """Seconds of ``time_limit`` kept for the uncertainty calibration of a ``shape`` (T, Z, Y, X)
    stack: its estimated cost, at least :data:`CALIBRATION_SHARE` and at most
    :data:`CALIBRATION_MAX_SHARE` of the limit (a calibration cut short still uses two frames)."""
    estimate = calibration_seconds(shape)
    return min(max(CALIBRATION_SHARE * time_limit, estimate), CALIBRATION_MAX_SHARE * time_limit)


def calibration_fits(shape: tuple[int, ...], deadline: float | None) -> bool:
    """Whether the calibration's estimated cost fits before ``deadline`` (a perf_counter value;
    None: no limit). When it does not, training ends without it and rendering fits it on first
    use, so that the time limit holds."""
    return deadline is None or time.perf_counter() + calibration_seconds(shape) <= deadline


def _motion_task(
    model_dir: ModelDir,
    config: TrainConfig,
    params: SpatimeINRParams,
    device: torch.device,
    budget: float | None,
    mask: PackedMask,
    stop: Callable[[], bool],
    flows_file: str = motion_task.FLOWS_FILE,
) -> Generator[Progress, None, motion_task.MotionTask | None]:
    """The refiner's task over the model's stack, or over all its stacks (several inputs: the flows
    of each computed and stored beside its input, the flow budget shared by their frame pairs).
    None when stopped while computing flows."""
    stacks = list(training_stacks(model_dir))
    if len(stacks) == 1:
        flows = yield from motion_task.ensure_flows(
            model_dir, stop, device, budget, flows_file=flows_file
        )
        if flows is None:
            return None
        return motion_task.MotionTask(
            model_dir.input,
            flows["gap1"],
            mask,
            params.patch_size,
            params.batch_size,
            device,
            config.seed,
            flows.get("computed"),
        )
    records = model_dir.meta["stacks"]
    pairs = [max(int(r["shape"][0]) - 1, 0) for r in records]
    parts = []
    for (k, input_path, flows_path), n in zip(stacks, pairs, strict=True):
        share = None if budget is None else budget * n / max(sum(pairs), 1)
        rel_in = input_path.relative_to(model_dir.path).as_posix()
        rel_fl = flows_path.relative_to(model_dir.path).as_posix()
        flows = yield from motion_task.ensure_flows(model_dir, stop, device, share, rel_in, rel_fl)
        if flows is None:
            return None
        data = motion_task.stored_input(model_dir, rel_in)
        holdout = mask if k == 0 else PackedMask.holdout(data.shape, config.seed + 1000 * k)
        parts.append((data, flows["gap1"], holdout, flows.get("computed")))
    return motion_task.MotionTask.several(
        parts, params.patch_size, params.batch_size, device, config.seed
    )


def train(
    model_dir: ModelDir,
    config: TrainConfig,
    stop: Callable[[], bool],
    flows_file: str = motion_task.FLOWS_FILE,
) -> Iterator[Progress]:
    """Train (or resume training of) the refiner of the fast engine in ``model_dir``.

    ``flows_file``: the flows its examples are warped by (computed from its own input if missing);
    by default the model's ``flows.npz`` (a channel's: the one motion of all channels)."""
    t_start = time.perf_counter()
    params = resolve_params(config)
    device = torch_device(config.device)
    shape = tuple(int(s) for s in model_dir.shape)
    mask_np = PackedMask.holdout(shape, config.seed)
    torch.manual_seed(config.seed)
    budget = motion_task.FLOW_SHARE * config.time_limit if config.time_limit else None
    task = yield from _motion_task(
        model_dir, config, params, device, budget, mask_np, stop, flows_file
    )
    net: torch.nn.Module = make_refiner(params, shape).to(device)
    why = None
    if task is None:
        why = "stopped while computing motion"
    elif task.empty and shape[0] < 2:
        why = "a single frame: nothing to learn in time (renders the spline)"
    elif task.empty:
        why = (
            "the time limit ran out before the first frame pair's motion was solved: nothing "
            "learned in time (rendering solves the motion; a longer time limit trains the refiner)"
        )
    yield from loop.run(
        model_dir,
        config,
        params,
        net,
        lambda gen: task.loss(net, gen),
        lambda: task.validate(net),
        stop,
        device=device,
        validate_every=motion_task.VALIDATE_EVERY,
        t_start=t_start,
        nothing_to_learn=why,
    )


def train_with_calibration(
    model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]
) -> Iterator[Progress]:
    """The fast engine's training, then the uncertainty calibration on its held-out frames
    (``uncertainty.json``; skipped after a Stop: rendering then fits it on first use)."""
    t0 = time.perf_counter()
    inner = config
    if config.time_limit is not None:
        reserve = calibration_reserve(tuple(model_dir.shape), config.time_limit)
        inner = config.model_copy(update={"time_limit": config.time_limit - reserve})
    last = None
    for p in train_with_spatial(model_dir, inner, stop, train):
        if p.done:
            last = p
            break
        yield p
    deadline = t0 + config.time_limit if config.time_limit is not None else None
    late = not calibration_fits(tuple(model_dir.shape), deadline)
    if last is not None and late and "stopped" not in last.message:
        # the time limit is spent (a loaded machine): rendering fits the calibration on first use
        last.message = f"{last.message}; uncertainty not calibrated (time limit reached)"
    elif last is not None and not stop() and "stopped" not in last.message:
        yield Progress(
            step=last.step,
            total=last.total,
            seconds=time.perf_counter() - t0,
            message="uncertainty: calibrating on held-out frames",
        )
        cal = MotionRenderer(model_dir, config.device).fit_calibration(deadline=deadline)
        model_dir.write_atomic(uncertainty.UNCERTAINTY_FILE, cal.to_json().encode())
        last.message = f"{last.message}; uncertainty calibrated on {cal.fit['frames']} frames"
    if last is not None:
        yield last
