"""The training loop every learned engine shares, as a generator of :class:`Progress` records.

An engine (:mod:`.fast.train`, :mod:`.paper.train`) builds its network, its loss of one step and
its validation; :func:`run` does the rest: warm start, resume, the learning-rate schedule, the time
limit, the best weights on held-out data, checkpoints and progress.

Deterministic on CPU for a given seed: every random draw (examples, targets, jitter) comes from one
``torch.Generator`` whose state is checkpointed, so N steps in one run and N/2 + resumed N/2 end with
the same weights. Checkpoints are written atomically every ``config.checkpoint_every`` seconds and
at the end; ``stop()`` is polled after every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..core.config import SpatimeINRParams, TrainConfig
from ..core.progress import Progress
from ..store import checkpoint
from ..store.model_dir import ModelDir
from ..store.records import init_weights
from .presets import total_steps

HOLDOUT_FRACTION = 0.02
REPORT_EVERY = 0.5  # seconds between progress records


def _holdout_frames(shape: tuple[int, ...], seed: int):
    """The held-out voxels frame by frame: one random stream over the whole stack (drawing it in
    pieces gives the same values as drawing it at once), never a float64 copy of the stack."""
    rng = np.random.default_rng(seed + 7919)
    for _ in range(int(shape[0])):
        yield rng.random(tuple(shape[1:])) < HOLDOUT_FRACTION


def holdout_mask(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The input voxels held back from training (about 2%), fixed by ``seed``."""
    out = np.empty(tuple(shape), dtype=bool)
    for t, frame in enumerate(_holdout_frames(shape, seed)):
        out[t] = frame
    return out


class PackedMask:
    """A boolean (T, *S) mask kept as one bit per voxel (packed along the last axis): the held-out
    voxels of a big stack in 1/8 of a byte each."""

    def __init__(self, shape: tuple[int, ...], bits: np.ndarray):
        self.shape = tuple(int(s) for s in shape)
        self.bits = bits

    @classmethod
    def holdout(cls, shape: tuple[int, ...], seed: int) -> PackedMask:
        """:func:`holdout_mask` of ``shape`` and ``seed``, packed."""
        n = -(-int(shape[-1]) // 8)
        bits = np.empty((*shape[:-1], n), dtype=np.uint8)
        for t, frame in enumerate(_holdout_frames(shape, seed)):
            bits[t] = np.packbits(frame, axis=-1)
        return cls(shape, bits)

    @classmethod
    def of(cls, mask: np.ndarray) -> PackedMask:
        return cls(mask.shape, np.packbits(np.asarray(mask, dtype=bool), axis=-1))

    def __getitem__(self, key: tuple) -> np.ndarray:
        """``mask[t, z0:z1, y0:y1, x0:x1]``-style indexing (an int or slices; the last axis a
        slice)."""
        *lead, last = key
        start, stop, step = last.indices(self.shape[-1])
        b0, b1 = start // 8, -(-stop // 8)
        rows = np.unpackbits(self.bits[(*lead, slice(b0, b1))], axis=-1)
        return rows[..., start - 8 * b0 : stop - 8 * b0 : step].astype(bool)


def learning_rate(params: SpatimeINRParams, fraction: float) -> float:
    """Linear decay from ``lr`` to ``lr_final`` over the run (seed 001 §4.2)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return params.lr + (params.lr_final - params.lr) * fraction


def run(
    model_dir: ModelDir,
    config: TrainConfig,
    params: SpatimeINRParams,
    net: torch.nn.Module,
    step_loss: Callable[[torch.Generator], torch.Tensor],
    validate: Callable[[], float | None],
    stop: Callable[[], bool],
    *,
    device: torch.device,
    validate_every: int,
    t_start: float,
    nothing_to_learn: str | None = None,
    publish: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Iterator[Progress]:
    """Train ``net`` by ``step_loss`` until the steps or the time limit run out, or ``stop()``.

    ``nothing_to_learn``: a reason to save the untrained network and end at once (e.g. a single
    frame). ``t_start``: when the engine began (its set-up counts against the time limit).
    ``publish``: writes the weights renderers use, from the best weights so far, in place of
    ``model.pt`` (a shared refiner: each channel's model); ``checkpoint.pt`` is written as always.
    """
    total = total_steps(config)
    amp = device.type == "cuda"  # bfloat16 autocast on CUDA only: float32 on mps and cpu
    if checkpoint.load_state(model_dir) is None:  # a warm start (train --init-from)
        init = init_weights(model_dir)
        if init is not None:
            net.load_state_dict(init)
    opt = torch.optim.Adam(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    step, prior_seconds = 0, 0.0
    history = []
    t_val = time.perf_counter()
    best_psnr = (
        None if nothing_to_learn is not None else validate()
    )  # the untrained model (its base)
    # time kept back at the end of a time-limited run: the last validation and the writes
    reserve = 1.5 * (time.perf_counter() - t_val) + 0.5
    best = {k: v.detach().clone() for k, v in net.state_dict().items()}
    state = checkpoint.load_state(model_dir)
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step = int(state["step"])
        best = state["best"]
        best_psnr = float(state["best_psnr"])
        prior_seconds = float(state["seconds"])
        history = [r for r in model_dir.read_history() if r.get("step", 0) <= step]
    if step >= total:
        yield Progress(step=step, total=total, message="already trained", done=True)
        return

    def save() -> None:
        elapsed = prior_seconds + time.perf_counter() - t_start
        if publish is not None:  # the renderers' weights first, as checkpoint.save does
            publish(best)
        checkpoint.save(
            model_dir,
            {
                "step": torch.tensor(step),
                "seconds": torch.tensor(elapsed, dtype=torch.float64),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "holdout_seed": torch.tensor(config.seed),
                "best": {k: v.detach().cpu() for k, v in best.items()},
                "best_psnr": torch.tensor(best_psnr if best_psnr is not None else float("nan")),
            },
            net.state_dict(),
            best,
            write_model=publish is None,
        )
        model_dir.write_history(history)
        model_dir.update_meta(
            train_steps=step,
            train_seconds=round(elapsed, 3),
            params=params.model_dump(),
            heldout_psnr=best_psnr,
        )

    if nothing_to_learn is not None:
        save()
        why = nothing_to_learn
        yield Progress(
            step=step,
            total=total,
            seconds=time.perf_counter() - t_start,
            eta=0.0,
            message=why,
            done=True,
        )
        return

    start_step = step
    loop_start = time.perf_counter() - t_start
    last_report = last_ckpt = time.perf_counter()
    val_psnr = best_psnr
    loss_v = float("nan")
    lr = params.lr
    while True:
        now = time.perf_counter() - t_start
        frac = step / total
        if config.time_limit:
            frac = max(frac, (prior_seconds + now) / (prior_seconds + config.time_limit))
        lr = learning_rate(params, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss = step_loss(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_v = float(loss.detach())
        elapsed = time.perf_counter() - t_start
        at_end = step >= total or (
            config.time_limit is not None
            and elapsed + reserve + (elapsed - loop_start) / max(step - start_step, 1)
            >= config.time_limit
        )
        finished = at_end or stop()
        if step % validate_every == 0 or finished:
            val_psnr = validate()
            # a stop request does not choose weights (a resumed run then ends like an uninterrupted one)
            candidate = step % validate_every == 0 or at_end
            if candidate and val_psnr is not None and (best_psnr is None or val_psnr > best_psnr):
                best_psnr = val_psnr
                best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        wall = time.perf_counter()
        if wall - last_report >= REPORT_EVERY or finished:
            last_report = wall
            history.append(
                dict(step=step, loss=loss_v, psnr=val_psnr, lr=lr, seconds=prior_seconds + elapsed)
            )
            rate = (step - start_step) / max(elapsed, 1e-9)
            eta = (total - step) / rate if rate > 0 else None
            if config.time_limit is not None:
                eta = min(eta or float("inf"), max(config.time_limit - elapsed, 0.0))
            if not finished:
                yield Progress(
                    step=step,
                    total=total,
                    seconds=elapsed,
                    eta=eta,
                    loss=loss_v,
                    psnr=val_psnr,
                    lr=lr,
                    message="training",
                )
        if finished:
            break
        if wall - last_ckpt >= config.checkpoint_every:
            save()
            last_ckpt = time.perf_counter()
    save()
    yield Progress(
        step=step,
        total=total,
        seconds=time.perf_counter() - t_start,
        eta=0.0,
        loss=loss_v,
        psnr=best_psnr,
        lr=lr,
        message="done",
        done=True,
        extra={"last_psnr": val_psnr, "best_psnr": best_psnr},
    )
