"""The SpatimeINR training loop as a generator of :class:`Progress` records.

Deterministic on CPU for a given seed: every random draw (examples, targets, jitter) comes from one
``torch.Generator`` whose state is checkpointed, so N steps in one run and N/2 + resumed N/2 end with
the same weights. Checkpoints are written atomically every ``config.checkpoint_every`` seconds and
at the end; ``stop()`` is polled after every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator

import numpy as np
import torch

from ..core.config import SpatimeINRParams, TrainConfig
from ..core.errors import SpatimeINRError
from ..core.progress import Progress
from ..store import checkpoint
from ..store.model_dir import ModelDir
from ..store.records import init_weights, training_stacks
from .fast import task as motion_task
from .fast.refiner import make_refiner
from .losses import cycle_loss, mse, psnr
from .paper.examples import Example, eligible_axes, gather_window, keep_targets, sample_example
from .paper.network import SpatimeINRNet
from .presets import resolve_params, total_steps

HOLDOUT_FRACTION = 0.02
REPORT_EVERY = 0.5  # seconds between progress records
VALIDATE_STEPS = 25  # steps between held-out PSNR measurements (step-based: reproducible)
N_VALIDATION = 4  # validation examples (held-out voxels)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpatimeINRError(
            "device 'cuda' was asked but no CUDA GPU is available: use auto or cpu."
        )
    return torch.device(device)


def holdout_mask(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The input voxels held back from training (about 2%), fixed by ``seed``."""
    return np.random.default_rng(seed + 7919).random(shape) < HOLDOUT_FRACTION


def learning_rate(params: SpatimeINRParams, fraction: float) -> float:
    """Linear decay from ``lr`` to ``lr_final`` over the run (seed 001 §4.2)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return params.lr + (params.lr_final - params.lr) * fraction


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


def _motion_task(
    model_dir: ModelDir,
    config: TrainConfig,
    params: SpatimeINRParams,
    device: torch.device,
    budget: float | None,
    mask: np.ndarray,
    stop: Callable[[], bool],
) -> Generator[Progress, None, motion_task.MotionTask | None]:
    """The refiner's task over the model's stack, or over all its stacks (several inputs: the flows
    of each computed and stored beside its input, the flow budget shared by their frame pairs).
    None when stopped while computing flows."""
    stacks = list(training_stacks(model_dir))
    if len(stacks) == 1:
        flows = yield from motion_task.ensure_flows(model_dir, stop, device, budget)
        if flows is None:
            return None
        data = np.asarray(model_dir.input, dtype=np.float32)
        return motion_task.MotionTask(
            data,
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
        data = np.asarray(np.load(input_path, mmap_mode="r", allow_pickle=False), np.float32)
        holdout = mask if k == 0 else holdout_mask(data.shape, config.seed + 1000 * k)
        parts.append((data, flows["gap1"], holdout, flows.get("computed")))
    return motion_task.MotionTask.several(
        parts, params.patch_size, params.batch_size, device, config.seed
    )


def train(model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]) -> Iterator[Progress]:
    """Train (or resume training of) the SpatimeINR model in ``model_dir``."""
    t_start = time.perf_counter()
    params = resolve_params(config)
    total = total_steps(config)
    device = resolve_device(config.device)
    amp = device.type == "cuda"
    shape = tuple(int(s) for s in model_dir.shape)
    mask_np = holdout_mask(shape, config.seed)
    torch.manual_seed(config.seed)
    if params.motion:
        budget = motion_task.FLOW_SHARE * config.time_limit if config.time_limit else None
        task = yield from _motion_task(model_dir, config, params, device, budget, mask_np, stop)
        net: torch.nn.Module = make_refiner(params, shape).to(device)

        def step_loss(gen: torch.Generator) -> torch.Tensor:
            return task.loss(net, gen)

        def validate() -> float | None:
            return task.validate(net)

        nothing_to_learn = task is None or task.empty
        validate_every = motion_task.VALIDATE_EVERY
    else:
        axes = eligible_axes(shape, params)
        data = torch.from_numpy(np.array(model_dir.input, dtype=np.float32)).to(device)
        train_mask = torch.from_numpy(~mask_np)
        val = _validation(shape, params, torch.from_numpy(mask_np), config.seed)
        net = SpatimeINRNet(params).to(device)

        def step_loss(gen: torch.Generator) -> torch.Tensor:
            ex = keep_targets(
                sample_example(shape, params, gen, params.batch_size, axes), train_mask
            )
            t = ex.target.to(device)
            truth = data[t[:, 0], t[:, 1], t[:, 2], t[:, 3]]
            pred, subs = forward(net, data, ex, True, gen, params.cycle_weight > 0)
            loss = mse(pred, truth)
            if subs is not None:
                loss = loss + params.cycle_weight * cycle_loss(subs, truth)
            return loss

        def validate() -> float | None:
            return _validate(net, data, val)

        nothing_to_learn = False
        validate_every = VALIDATE_STEPS
    if checkpoint.load_state(model_dir) is None:  # a warm start (train --init-from)
        init = init_weights(model_dir)
        if init is not None:
            net.load_state_dict(init)
    opt = torch.optim.Adam(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    step, prior_seconds = 0, 0.0
    history = []
    t_val = time.perf_counter()
    best_psnr = None if nothing_to_learn else validate()  # the untrained model (its base)
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
        )
        model_dir.write_history(history)
        model_dir.update_meta(
            train_steps=step,
            train_seconds=round(elapsed, 3),
            params=params.model_dump(),
            heldout_psnr=best_psnr,
        )

    if nothing_to_learn:
        save()
        why = (
            "stopped while computing motion"
            if task is None
            else "a single frame: nothing to learn in time (renders the spline)"
        )
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
