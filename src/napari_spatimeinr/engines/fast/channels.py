"""Training one fast-engine model of all the channels of a stack (issue 23).

A multi-channel model is a directory per channel (:func:`~napari_spatimeinr.store.model_dir.
channel_dirs`: the top one is channel 0's), each a complete single-channel model, so rendering,
export and QC handle a channel as they handle any model. Training:

1. the motion, once: one optical flow for all channels (the top ``flows.npz``, from the mean of
   the normalized channels or from ``meta.json["motion_from"]``), within the flow budget of one
   channel's training; every channel is rendered (and the motion exported) with it;
2. the z decoder of each channel (its own axial blur and contrast), :data:`Z_COST` / N of the
   preset's z steps each;
3. the refiners (:data:`REFINER`): by default one per channel, :data:`REFINER_COST` / N of the
   refiner steps each, learning from the channel's neighbour frames warped by the channel's own
   flow (:data:`OWN_TRAINING_FLOWS`); or one :class:`~.refiner.ChannelRefiner` for all channels
   (``"shared"``), folded into a plain refiner per channel;
4. the uncertainty calibration of each channel.

What was measured (benchmarks/RESULTS.md, issue 23; two channels, nuclei and membrane): warped by
the mean motion, a channel's training pairs are 0.4–0.6 dB further from their targets than warped
by its own flow, and a refiner learning from them stayed near plain interpolation (nuclei −0.61 dB
against its own single-channel model); the shared refiner on the mean motion reached −0.18 / −0.25
dB; each channel's own training flow brings it back to its single-channel model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ...core.config import SpatimeINRParams, TrainConfig
from ...core.device import torch_device
from ...core.progress import Progress
from ...store import checkpoint
from ...store.model_dir import ModelDir, channel_dirs
from .. import loop
from ..loop import PackedMask
from ..presets import resolve_params, total_steps
from ..zdecoder.train import spatial_seconds, train_spatial, wanted
from . import task as motion_task
from . import uncertainty
from .refiner import ChannelRefiner, make_channel_refiner
from .render import MotionRenderer
from .train import calibration_fits, calibration_reserve

#: the z decoders of N channels cost at most this many times one channel's: each trains
#: Z_COST / N of the preset's z steps and of its time share (the z decoder adds nothing to a
#: time-lapse's frames; one channel's worth of it is what a single-channel model spends)
Z_COST = 1.0
#: how the channels' refiners learn: "separate" (a refiner per channel, each REFINER_COST / N of
#: the refiner steps) or "shared" (one :class:`~.refiner.ChannelRefiner`, SHARED_STEPS × the
#: steps, crops of all channels). Measured on two channels (benchmarks/RESULTS.md, issue 23):
#: separate keeps each channel within 0.15 dB of its own single-channel model, shared did not
#: (the channels' corrections interfere more than they teach each other)
REFINER = "separate"
#: the refiners of N separate channels train this many times one single-channel model's steps in
#: all: with 2 channels each trains a single model's steps (1.6, 2400 of 3000 each, left the
#: nucleus channel 0.11-0.20 dB below its own model, benchmarks/RESULTS.md); with the z decoders'
#: Z_COST two channels cost about 1.25x one channel's
REFINER_COST = 2.0
#: each channel's refiner learns from its neighbour frames warped by the channel's own flow
#: (TRAIN_FLOWS, solved for training, then deleted); rendering uses the one motion
OWN_TRAINING_FLOWS = True
TRAIN_FLOWS = "train_flows.npz"
#: the shared refiner trains this many times the steps of a single-channel model's refiner (each
#: step the cost of one of them: the same crops, drawn from all channels)
SHARED_STEPS = 1.25


def applies(config: TrainConfig, shape: tuple[int, ...]) -> bool:
    """Whether a multi-channel model of ``shape`` trains here (the fast engine on a time-lapse:
    there is motion to share); otherwise each channel trains by its method alone."""
    from ..presets import engine_of

    params = resolve_params(config)
    return (
        config.method == "spatimeinr"
        and engine_of(config) == "fast"
        and bool(params.motion)
        and shape[0] >= 2
    )


def _prefixed(records: Iterator[Progress], prefix: str, t0: float):
    """Progress records of one phase with ``prefix`` and the whole training's seconds; returns
    the phase's return value."""
    while True:
        try:
            p = next(records)
        except StopIteration as end:
            return end.value
        p.message = f"{prefix}: {p.message}".rstrip(": ")
        p.seconds = time.perf_counter() - t0
        p.done = False
        yield p


def _separate(dirs, names, config, params, flows, device, seconds, stop, t0):
    """A refiner per channel (:func:`.train.train` on the channel's model), one after the other,
    each ``REFINER_COST / N`` of the steps and an even share of the time left, learning from pairs
    warped by the channel's own flow (:data:`OWN_TRAINING_FLOWS`; else the one motion).
    Returns (last record, steps of all, held-out PSNR of each, True for each)."""
    from . import train as fast_train

    n = len(dirs)
    per = max(1, math.ceil(total_steps(config) * REFINER_COST / n))
    t1 = time.perf_counter()
    last, steps, scores = None, 0, []
    for k, sub in enumerate(dirs):
        update: dict[str, Any] = {"steps": per}
        if seconds is not None:
            update["time_limit"] = max((seconds - (time.perf_counter() - t1)) / (n - k), 1.0)
        own = TRAIN_FLOWS if OWN_TRAINING_FLOWS else motion_task.FLOWS_FILE
        for p in fast_train.train(sub, config.model_copy(update=update), stop, own):
            if p.done:
                last = p
                break
            p.message = f"channel {k} ({names[k]}): refiner: {p.message}"
            p.step += steps
            p.total = per * n
            p.seconds = time.perf_counter() - t0
            yield p
        (sub.path / TRAIN_FLOWS).unlink(missing_ok=True)  # rendering uses the one motion
        fresh = ModelDir(sub.path)
        steps += int(fresh.meta.get("train_steps", 0))
        scores.append(fresh.meta.get("heldout_psnr"))
        # after a Stop the channels still to train end at once (stop() stays True): each is
        # written untrained (its refiner the identity: motion-compensated interpolation)
    return last, steps, scores, [True] * n


def _shared(dirs, names, config, params, flows, device, seconds, stop, t0):
    """One :class:`~.refiner.ChannelRefiner` for all channels, its best weights folded into each
    channel's refiner; a channel whose held-out voxels it does not improve keeps the identity.
    Returns (last record, steps, held-out PSNR of each, whether each kept the trained weights)."""
    n = len(dirs)
    md = dirs[0]
    shape = tuple(int(s) for s in md.shape)
    mask = PackedMask.holdout(shape, config.seed)
    parts = [
        (motion_task.stored_input(sub), flows["gap1"], mask, flows.get("computed")) for sub in dirs
    ]
    task = motion_task.MotionTask.several(
        parts, params.patch_size, params.batch_size, device, config.seed, channels=True
    )
    torch.manual_seed(config.seed)
    net = make_channel_refiner(params, shape, n).to(device)
    base = task.validate_channels(None)  # the identity: motion-compensated interpolation

    def publish(best: dict[str, torch.Tensor]) -> None:
        held = ChannelRefiner(net.base.width, net.base.depth, net.base.z_kernel, n)
        held.load_state_dict({k: v.cpu() for k, v in best.items()})
        for k, sub in enumerate(dirs):
            checkpoint.save_weights(sub, held.bake(k).state_dict())

    update: dict[str, Any] = {"steps": max(1, math.ceil(total_steps(config) * SHARED_STEPS))}
    if seconds is not None:
        update["time_limit"] = seconds
    ref_cfg = config.model_copy(update=update)
    why = None
    if task.empty:
        why = "the time limit ran out before the first frame pair's motion was solved"
    t_ref = time.perf_counter()
    last = None
    phase = loop.run(
        md,
        ref_cfg,
        params,
        net,
        lambda gen: task.loss(net, gen),
        lambda: task.validate(net),
        stop,
        device=device,
        validate_every=motion_task.VALIDATE_EVERY,
        t_start=t_ref,
        nothing_to_learn=why,
        publish=publish,
    )
    for p in phase:
        if p.done:
            last = p
            break
        p.message = f"all channels, one refiner: {p.message}"
        p.seconds = time.perf_counter() - t0
        yield p
    steps = int(md.meta.get("train_steps", 0))
    history = md.read_history()
    # each channel keeps the shared weights only where they beat its identity on held-out voxels
    net.load_state_dict(checkpoint.load_state(md)["best"])
    scores = task.validate_channels(net)
    (md.path / "checkpoint.pt").unlink(missing_ok=True)  # a shared state no single channel loads
    ref_seconds = time.perf_counter() - t_ref
    kept = []
    for k, sub in enumerate(dirs):
        score, start = scores[k], base[k]
        keep = score is not None and (start is None or score > start)
        if not keep:
            identity = ChannelRefiner(net.base.width, net.base.depth, net.base.z_kernel, n)
            checkpoint.save_weights(sub, identity.bake(k).state_dict())
            score = start
        kept.append(keep)
        sub.write_history(history)
        sub.update_meta(
            train_steps=steps,
            params=params.model_dump(),
            heldout_psnr=score,
            shared_refiner={
                "channels": n,
                "channel": k,
                "kept": keep,
                "heldout_psnr_identity": start,
                "seconds": round(ref_seconds, 3),
            },
        )
        scores[k] = score
    return last, steps, scores, kept


def train(md: ModelDir, config: TrainConfig, stop: Callable[[], bool]) -> Iterator[Progress]:
    """Train every channel of the multi-channel model ``md`` (see the module's docstring).

    Progress records say which phase and channel; only the last one is ``done``.
    """
    t0 = time.perf_counter()
    dirs = channel_dirs(md)
    n = len(dirs)
    names = md.meta.get("channel_names") or [f"C{k}" for k in range(n)]
    params = resolve_params(config)
    device = torch_device(config.device)
    shape = tuple(int(s) for s in md.shape)
    limit = config.time_limit
    deadline = t0 + limit if limit is not None else None

    def left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter()

    z_part = wanted(params, shape)
    z_seconds = spatial_seconds(config, shape) if z_part else 0.0
    # the calibrations at the end: one per channel
    cal_reserve = n * calibration_reserve(shape, limit) if limit is not None else 0.0

    # 1. one motion for all channels
    budget = None
    if limit is not None:  # what a single channel's flow would get, after its z decoder
        budget = motion_task.FLOW_SHARE * (limit - (z_seconds or 0.0))
    how = md.meta.get("motion_from", "mean")
    src = "the mean of the channels" if how == "mean" else f"channel {names[int(how)]}"
    yield Progress(seconds=0.0, message=f"motion: one optical flow for all channels, from {src}")
    flows = yield from _prefixed(motion_task.ensure_flows(md, stop, device, budget), "motion", t0)
    if flows is None:
        yield Progress(seconds=time.perf_counter() - t0, message="stopped", done=True)
        return

    # 2. each channel's z decoder
    records: list[dict[str, Any] | None] = [None] * n
    if z_part:
        per_z = max(1, math.ceil((params.spatial_steps or 1) * Z_COST / n))
        z_params = (config.params or SpatimeINRParams()).model_copy(update={"spatial_steps": per_z})
        for k, sub in enumerate(dirs):
            seconds = None
            if limit is not None:
                seconds = (z_seconds or 0.0) * Z_COST / n
                seconds = max(min(seconds, (left() or 0.0) / (n - k) * 0.5), 1.0)
            sub_cfg = config.model_copy(update={"params": z_params})
            phase = train_spatial(sub, sub_cfg, stop, seconds)
            records[k] = yield from _prefixed(phase, f"channel {k} ({names[k]}): z decoder", t0)

    # 3. the refiners
    ref_left = None if limit is None else max((left() or 0.0) - cal_reserve, 1.0)
    refiners = _separate if REFINER == "separate" else _shared
    outcome = yield from refiners(dirs, names, config, params, flows, device, ref_left, stop, t0)
    last, steps, scores, kept = outcome
    md.update_meta(channel_train_steps=steps)
    for k, sub in enumerate(dirs):
        sub.update_meta(
            train_seconds=round(time.perf_counter() - t0, 3),
            **({"spatial": records[k]} if records[k] is not None else {}),
        )

    # 4. each channel's uncertainty calibration
    notes = []
    if stop():
        notes.append("stopped")
    elif shape[0] >= 3:
        for k, sub in enumerate(dirs):
            if not calibration_fits(shape, deadline):
                notes.append("uncertainty not calibrated (time limit reached)")
                break
            yield Progress(
                step=steps,
                total=steps,
                seconds=time.perf_counter() - t0,
                message=f"channel {k} ({names[k]}): uncertainty: calibrating on held-out frames",
            )
            cal = MotionRenderer(ModelDir(sub.path), config.device).fit_calibration(
                deadline=deadline
            )
            sub.write_atomic(uncertainty.UNCERTAINTY_FILE, cal.to_json().encode())
    said = ", ".join(
        f"{names[k]} {scores[k]:.2f} dB" if kept[k] else f"{names[k]} identity"
        for k in range(n)
        if scores[k] is not None or not kept[k]
    )
    how = "one refiner for" if REFINER == "shared" else "a refiner for each of"
    final = last or Progress()
    final.message = "; ".join(
        [f"done: {how} {n} channels (held-out {said})" if said else "done", *notes]
    )
    final.step = steps
    final.total = steps
    final.seconds = time.perf_counter() - t0
    final.done = True
    yield final
