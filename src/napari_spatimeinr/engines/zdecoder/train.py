"""Training of the z decoder by lateral self-supervision, as a generator of Progress records.

Pairs come from the y–x planes of all frames (:mod:`.degrade`): a random crop, degraded along x or
y (alternating) with input voxels of ``r = dz/dx`` px and output cells of ``r/s`` px, ``s`` drawn
log-uniformly from ``[1.5, min(r, spatial_max_factor)]`` so that one model serves any float factor:
the render's problem at its physical scale (input voxels of ``dz`` µm, cells of ``dz/s`` µm), with
the axial blur and contrast gain estimated from the stack's z lines. 2% of the planes (at least one) are held out: the weights with the best PSNR on them are kept, and
at the end the decoder is compared there with the spline, cubic, linear and nearest at a few
factors; the table goes to meta.json (``spatial``) and the renderer uses, per factor, whichever won.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np
import torch

from ...core.config import SpatimeINRParams, TrainConfig
from ...core.progress import Progress
from ...store.model_dir import ModelDir
from ...store.records import init_weights
from ..presets import resolve_params
from . import SPATIAL_FILE, summary
from .decoder import ZDecoder, classical_matrix, make_decoder, projection_matrix, spline_matrix
from .degrade import add_noise, estimate_axial_blur, estimate_noise, make_pair

HOLDOUT_FRACTION = 0.02
#: smallest z/x voxel ratio trained for (a stack that says it is isotropic still gets a model)
MIN_RATIO = 2.0
MIN_FACTOR = 1.5
#: coarse voxels per training line, fine samples per crop
N_COARSE = 24
CROP = 64
VALIDATE_EVERY = 50
EMA_DECAY = 0.99
REPORT_EVERY = 0.5
VAL_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
BASELINES = {"spline": None, "cubic": 3, "linear": 1, "nearest": 0}
#: add to the training inputs the noise a z voxel has and their lateral means lost (off: on
#: z_cells3d it cost 0.4 dB in z, the decoder learned to smooth; on the beads it did not help:
#: benchmarks/RESULTS.md, issue 22). The estimate is still recorded in meta.json.
MATCH_NOISE = False
#: the decoder's residual keeps the voxel means (False: it is trained free to change them, i.e. to
#: denoise, and the held-out planes decide whether its render is projected back onto them)
MEAN_PRESERVING = False
#: fit the contrast gain of points seen along z (degrade.estimate_axial_blur)
FIT_GAIN = True
#: the axial blur (lateral px) instead of its estimate (experiments; None: estimated)
AXIAL_BLUR_PX: float | None = None
#: whether the z check (pooled by 2, at twice the voxel size) may overrule the held-out planes
Z_CHECK_DECIDES = False
#: held-out gain (dB) over the best interpolation the decoder needs to be kept
KEEP_MARGIN_DB = 0.05


def spatial_seconds(config: TrainConfig, shape: tuple[int, ...]) -> float | None:
    """Seconds the spatial part gets of ``config.time_limit`` (all of it for a single volume)."""
    if config.time_limit is None:
        return None
    if shape[0] == 1:
        return float(config.time_limit)
    return float(config.time_limit) * resolve_params(config).spatial_share


def wanted(params: SpatimeINRParams, shape: tuple[int, ...]) -> bool:
    """Whether this stack gets a learned spatial part (the fast engine, Z >= 2)."""
    return bool(params.motion and params.spatial and shape[1] >= 2)


def _ratios(voxel_size: tuple[float, float, float]) -> dict[int, float]:
    """Input voxel side in lateral px per degraded axis: {2 (y): dz/dy, 3 (x): dz/dx}."""
    vz, vy, vx = voxel_size
    return {2: max(vz / vy, MIN_RATIO), 3: max(vz / vx, MIN_RATIO)}


def _starts(length: int, span: float, sigma: float, k: int, gen: torch.Generator) -> torch.Tensor:
    """``k`` random starts (px) of ``span`` px inside a line of ``length`` px, kept 3·sigma from
    its ends where it fits (there the blur would read the replicated edge)."""
    room = length - span
    margin = min(math.ceil(3.0 * sigma) + 1.0 if sigma > 0.05 else 0.0, max(room, 0.0) / 2)
    return margin + torch.rand(k, generator=gen, dtype=torch.float64) * max(room - 2 * margin, 0.0)


#: most bytes of lateral planes (float32) the z decoder trains on; a bigger stack trains on a random
#: subset of its planes (2 GB stacks: about 1 plane in 5), so that its memory does not grow with it
MAX_PLANE_BYTES = 256 * 2**20


#: most voxels of held-out lateral planes (the decoder's validation): 2% of the planes of small
#: stacks, about 18 planes of 320 × 352
MAX_HELD_VOXELS = 1 << 21


def _planes(data, index: np.ndarray) -> np.ndarray:
    """Lateral planes ``index`` (into the T·Z planes) of ``data``, float32 (P, Y, X), read a frame
    at a time in the order given."""
    t, nz, ny, nx = data.shape
    out = np.empty((len(index), ny, nx), dtype=np.float32)
    index = np.asarray(index, dtype=np.int64)
    for i in np.unique(index // nz):
        rows = np.nonzero(index // nz == i)[0]
        out[rows] = np.asarray(data[int(i), index[rows] % nz], dtype=np.float32)
    return out


class LateralTask:
    """Training and held-out pairs from the lateral planes of a (T, Z, Y, X) stack."""

    def __init__(self, data: np.ndarray, voxel_size, params: SpatimeINRParams, seed: int):
        t, nz, ny, nx = data.shape
        self.params = params
        rng = np.random.default_rng(seed + 4099)
        n_hold = max(1, int(round(HOLDOUT_FRACTION * t * nz))) if t * nz > 1 else 0
        # drawn among the planes with content (std at least the median): an empty plane checks nothing
        std = np.concatenate(
            [
                torch.from_numpy(np.ascontiguousarray(data[i], dtype=np.float32))
                .reshape(nz, -1)
                .std(dim=1)
                .numpy()
                for i in range(t)
            ]
        )
        pool = np.nonzero(std >= np.median(std))[0]
        held = rng.choice(pool, size=min(n_hold, len(pool)), replace=False) if n_hold else pool[:0]
        keep = np.setdiff1d(np.arange(t * nz), held)
        # a big stack: a random subset of its planes, at most MAX_PLANE_BYTES of them (memory)
        most = max(1, MAX_PLANE_BYTES // (4 * ny * nx))
        if len(keep) > most:
            sub = np.random.default_rng(seed + 4111)
            keep = np.sort(sub.choice(keep, size=most, replace=False))
        # the held-out check (validated several times, and once more at the end) on at most
        # MAX_HELD_VOXELS: on a big stack 2% of its planes took minutes per validation
        held = held[: max(1, min(most, MAX_HELD_VOXELS // (ny * nx)))]
        self.train_planes = torch.from_numpy(_planes(data, keep))
        self.held_planes = torch.from_numpy(_planes(data, held))
        ratios = _ratios(voxel_size)
        self.ratio = float(np.mean(list(ratios.values())))
        # the noise of one voxel (a·I + b), added to the training inputs (means over r pixels)
        self.noise_estimate = estimate_noise(data, seed=seed)
        self.noise = self.noise_estimate if MATCH_NOISE else (0.0, 0.0)
        self.sigma, self.blur_stats = (
            estimate_axial_blur(data, self.ratio, seed=seed, noise=self.noise, fit_gain=FIT_GAIN)
            if nz >= 3
            else (0.0, {})
        )
        if AXIAL_BLUR_PX is not None:  # an experiment's override
            self.sigma = float(AXIAL_BLUR_PX)
        # the contrast of points seen along z (degrade.estimate_axial_blur): lines are scaled
        # about the background by it before the noise is added
        self.gain = float(self.blur_stats.get("gain", 1.0)) if FIT_GAIN else 1.0
        scale = float(self.blur_stats.get("noise_scale", 1.0))
        self.noise = (self.noise[0] * scale, self.noise[1] * scale)
        self.background = float(self.blur_stats.get("background", 0.0))
        # orientations: lines along y (axis 2) or x (axis 3); usable if >= 2 coarse voxels fit
        self.axes = [a for a, r in ratios.items() if math.floor(((ny, nx)[a - 2] - 1) / r) >= 2]
        self.ratios = ratios
        self.cap = max(min(self.ratio, params.spatial_max_factor), MIN_FACTOR)
        self.factors = sorted({f for f in VAL_FACTORS if f <= self.cap + 1e-9} | {self.cap})
        self.val = self._validation(seed)

    @property
    def empty(self) -> bool:
        return not self.axes or len(self.train_planes) == 0

    def _lines(self, planes: torch.Tensor, axis: int) -> torch.Tensor:
        """Planes (P, Y, X) as lines along ``axis`` (P, L, W)."""
        return planes if axis == 2 else planes.transpose(1, 2)

    def sample(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One batch: ``(coarse (B, n, CROP), target (B, m, CROP), m)``."""
        b = self.params.spatial_batch
        axis = self.axes[int(torch.randint(len(self.axes), (1,), generator=gen))]
        r = self.ratios[axis]
        idx = torch.randint(len(self.train_planes), (b,), generator=gen)
        lines = self._lines(self.train_planes[idx], axis)
        length, width = lines.shape[1], lines.shape[2]
        n = int(min(N_COARSE, math.floor((length - 1) / r)))
        # a crop along L with room for the blur, and CROP samples along W
        span = int(math.ceil(n * r + 6 * self.sigma + 2))
        l0 = int(torch.randint(max(1, length - span + 1), (1,), generator=gen))
        w0 = int(torch.randint(max(1, width - CROP + 1), (1,), generator=gen))
        lines = lines[:, l0 : l0 + span, w0 : w0 + CROP].float()
        lo, hi = math.log(MIN_FACTOR), math.log(self.cap)
        s = math.exp(lo + (hi - lo) * float(torch.rand(1, generator=gen))) if hi > lo else self.cap
        m = max(n + 1, int(round(n * s)))
        start = _starts(lines.shape[1], n * r, self.sigma, b, gen)
        coarse, target = self._pair(lines, r, n, m, start)
        return add_noise(coarse, *self.noise, r, gen), target, m

    def _pair(self, lines, r, n, m, start) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`.degrade.make_pair` with this stack's axial blur and contrast gain."""
        coarse, target = make_pair(lines, r, self.sigma, n, m, start)
        if self.gain != 1.0:
            coarse = self.background + self.gain * (coarse - self.background)
            target = self.background + self.gain * (target - self.background)
        return coarse, target

    def _validation(self, seed: int) -> list[tuple[float, torch.Tensor, torch.Tensor, int]]:
        """Fixed held-out pairs: every held-out plane, both axes, every validated factor."""
        out = []
        g = torch.Generator().manual_seed(seed + 7)
        for axis in self.axes:
            if len(self.held_planes) == 0:
                break
            r = self.ratios[axis]
            lines = self._lines(self.held_planes, axis).float()
            n = int(math.floor((lines.shape[1] - 1) / r))
            for f in self.factors:
                m = max(n + 1, int(round(n * f)))
                start = _starts(lines.shape[1], n * r, self.sigma, len(lines), g)
                coarse, target = self._pair(lines, r, n, m, start)
                out.append((f, add_noise(coarse, *self.noise, r, g), target, m))
        return out

    def validate(self, net: ZDecoder | None) -> dict[float, dict[str, float]]:
        """PSNR (dB, normalized intensities) per validated factor: the decoder and/or baselines."""
        se: dict[float, dict[str, float]] = {}
        cnt: dict[float, int] = {}
        with torch.no_grad():
            for f, coarse, target, m in self.val:
                n = coarse.shape[1]
                preds: dict[str, torch.Tensor] = {}
                if net is not None:
                    preds["decoder"] = torch.cat([net(c, m) for c in coarse.split(8)])
                    if not net.mean_preserving:  # the same render projected onto the input's means
                        spl = torch.einsum("mn,bnw->bmw", spline_matrix(n, m), coarse)
                        res = preds["decoder"] - spl
                        proj = torch.einsum("km,bmw->bkw", projection_matrix(n, m), res)
                        preds["decoder_mean_preserving"] = spl + proj
                else:
                    for name, order in BASELINES.items():
                        mat = (
                            spline_matrix(n, m) if order is None else classical_matrix(n, m, order)
                        )
                        preds[name] = torch.einsum("mn,bnw->bmw", mat, coarse)
                row = se.setdefault(f, {})
                for name, p in preds.items():
                    row[name] = row.get(name, 0.0) + float(((p - target) ** 2).sum())
                cnt[f] = cnt.get(f, 0) + target.numel()
        return {
            f: {k: 10 * math.log10(1.0 / max(v / cnt[f], 1e-12)) for k, v in row.items()}
            for f, row in se.items()
        }

    def error_model(self, net: ZDecoder) -> dict[str, float]:
        """``|error| ≈ k·|decoder − spline| + c`` on the held-out pairs (non-negative least squares
        on the pairs' voxels): the z part of the uncertainty map (:meth:`.apply.SpatialResampler.
        uncertainty`)."""
        from scipy.optimize import nnls

        rs, es = [], []
        with torch.no_grad():
            for _f, coarse, target, m in self.val:
                pred = torch.cat([net(c, m) for c in coarse.split(8)])
                spline = torch.einsum("mn,bnw->bmw", spline_matrix(coarse.shape[1], m), coarse)
                rs.append((pred - spline).abs().reshape(-1).numpy())
                es.append((pred - target).abs().reshape(-1).numpy())
        if not rs:
            return {"k": 1.0, "c": 0.0}
        r, e = np.concatenate(rs).astype(np.float64), np.concatenate(es).astype(np.float64)
        (k, c), _ = nnls(np.stack([r, np.ones_like(r)], axis=1), e)
        return {"k": round(float(k), 5), "c": round(float(c), 6)}


def z_check(data: np.ndarray, max_lines: int = 20000, seed: int = 0) -> dict[str, float] | None:
    """PSNR of the interpolations on the stack's own z lines: pooled by 2, rendered x2 back.

    The lateral check cannot see how z itself behaves; this one can, coarsely. Where nearest beats
    the smooth interpolations along z (z samples nearly independent, e.g. few thick noisy slices),
    a decoder that refines the spline is not trusted. None when Z < 4.
    """
    t, nz, ny, nx = data.shape
    if nz < 4:
        return None
    rng = np.random.default_rng(seed + 31)
    k = min(t * ny * nx, max_lines)
    lines = np.asarray(
        data[rng.integers(0, t, k), :, rng.integers(0, ny, k), rng.integers(0, nx, k)]
    )
    n2 = nz // 2
    fine = torch.from_numpy(lines[:, : 2 * n2].astype(np.float32).T)  # (2·n2, k)
    coarse = 0.5 * (fine[0::2] + fine[1::2])
    out = {}
    for name, order in BASELINES.items():
        mat = spline_matrix(n2, 2 * n2) if order is None else classical_matrix(n2, 2 * n2, order)
        mse = float(((mat @ coarse - fine) ** 2).mean())
        out[name] = 10 * math.log10(1.0 / max(mse, 1e-12))
    return out


def _winner(row: dict[str, float], zc: dict[str, float] | None = None) -> str:
    """The decoder if it beats every baseline on the held-out planes by ``KEEP_MARGIN_DB``; else
    nearest wherever the z check (:func:`z_check`) says nearest beats the smooth interpolations,
    else the best baseline on the held-out planes.

    The held-out pairs are the render's problem at its physical scale, with the estimated axial
    blur and contrast (:mod:`.degrade`; a z voxel's noise too with ``MATCH_NOISE``); the z check
    measures at twice the voxel size, where the decoder was not trained, so it only picks among
    interpolations, and only with ``Z_CHECK_DECIDES`` (on the beads of benchmarks/z_kinds.py it
    ranked nearest first while the decoder beat nearest by 1 dB in z)."""
    best = max(BASELINES, key=lambda k: row[k])
    if row["decoder"] > row[best] + KEEP_MARGIN_DB:
        return "decoder"
    if Z_CHECK_DECIDES and zc and max(zc, key=zc.get) == "nearest":
        return "nearest"
    return best


def _save(model_dir: ModelDir, weights: dict[str, torch.Tensor]) -> None:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in weights.items()}, buf)
    model_dir.write_atomic(SPATIAL_FILE, buf.getvalue())


def _mean_psnr(table: dict[float, dict[str, float]], key: str) -> float:
    return float(np.mean([row[key] for row in table.values()]))


def train_spatial(
    model_dir: ModelDir,
    config: TrainConfig,
    stop: Callable[[], bool],
    seconds: float | None,
) -> Generator[Progress, None, dict[str, Any] | None]:
    """Train the z decoder of ``model_dir`` for ``spatial_steps`` steps (fewer if ``config.steps``
    is smaller) or ``seconds``, whichever ends first.

    Writes ``spatial.pt`` and ``meta.json["spatial"]``; returns that record (None when this stack
    gets no learned spatial part). Already trained (a resumed run): returns the stored record.
    """
    params = resolve_params(config)
    shape = tuple(int(s) for s in model_dir.shape)
    if not wanted(params, shape):
        return None
    done = model_dir.meta.get("spatial")
    if done and (model_dir.path / SPATIAL_FILE).is_file():
        return done
    torch.manual_seed(config.seed)
    net = make_decoder(params, MEAN_PRESERVING)
    init = init_weights(model_dir, SPATIAL_FILE)  # a warm start (train --init-from)
    if init is not None:
        net.load_state_dict(init)
    # the first optimizer of a process imports torch's compiler (seconds): not training time
    opt = torch.optim.Adam(net.parameters(), lr=params.spatial_lr)
    t0 = time.perf_counter()
    data = model_dir.input  # read a frame at a time (StoredInput)
    task = LateralTask(data, model_dir.voxel_size, params, config.seed)
    record: dict[str, Any] = {
        "ratio": round(task.ratio, 4),
        "axial_blur_px": round(task.sigma, 3),
        "axial_gain": round(task.gain, 4),
        "noise": {
            "a": round(task.noise_estimate[0], 6),
            "b": round(task.noise_estimate[1], 6),
            "matched": bool(MATCH_NOISE),
        },
        "keep_margin_db": KEEP_MARGIN_DB,
        "z_check_decides": bool(Z_CHECK_DECIDES),
        "blur_stats": {k: round(v, 4) for k, v in task.blur_stats.items()},
        "factors": task.factors,
        "heldout_planes": len(task.held_planes),
    }
    if task.empty or not task.val:
        record.update(kind="spline", why="planes too small for lateral self-supervision")
        model_dir.update_meta(spatial=record)
        return record
    gen = torch.Generator().manual_seed(config.seed)
    total = int(min(config.steps or params.spatial_steps, params.spatial_steps))
    base = task.validate(None)
    t_val = time.perf_counter()
    best_psnr = _mean_psnr(task.validate(net), "decoder")
    # time kept back within ``seconds``: the last validation, the held-out table and the error
    # model after the loop (each about one validation), and the z check's cost, spent first
    reserve = 3.0 * (time.perf_counter() - t_val) + 0.2
    zc = z_check(data, seed=config.seed)
    best = {k: v.detach().clone() for k, v in net.state_dict().items()}
    # an exponential moving average of the weights is what is validated and kept (less noisy)
    ema = make_decoder(params, MEAN_PRESERVING)
    ema.load_state_dict(net.state_dict())
    step, last = 0, time.perf_counter()
    loss_v = float("nan")
    while True:
        elapsed = time.perf_counter() - t0
        frac = max(elapsed / seconds if seconds else 0.0, step / total)
        lr = params.spatial_lr * (0.1 ** min(max(frac, 0.0), 1.0))
        for g in opt.param_groups:
            g["lr"] = lr
        coarse, target, m = task.sample(gen)
        loss = torch.mean((net(coarse, m) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():
            keep = min(EMA_DECAY, step / (step + 10))
            for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                pe.mul_(keep).add_(pn.detach(), alpha=1 - keep)
        loss_v = float(loss.detach())
        elapsed = time.perf_counter() - t0
        finished = bool(seconds and elapsed + reserve >= seconds) or step >= total or stop()
        if step % VALIDATE_EVERY == 0 or finished:
            v = _mean_psnr(task.validate(ema), "decoder")
            if v > best_psnr:
                best_psnr = v
                best = {k: t.detach().clone() for k, t in ema.state_dict().items()}
        if time.perf_counter() - last >= REPORT_EVERY and not finished:
            last = time.perf_counter()
            yield Progress(
                step=step,
                total=total,
                seconds=elapsed,
                eta=max(seconds - elapsed, 0.0) if seconds else None,
                loss=loss_v,
                psnr=best_psnr,
                lr=lr,
                message="spatial: training the z decoder on lateral planes",
            )
        if finished:
            break
    net.load_state_dict(best)
    table = task.validate(net)
    # keep the input's voxel means exactly (cycle consistency) unless changing them (denoising a
    # noisy input) measured better on the held-out planes
    if not net.mean_preserving and _mean_psnr(table, "decoder_mean_preserving") >= _mean_psnr(
        table, "decoder"
    ):
        net.mean_preserving = True
        for row in table.values():
            row["decoder_free_means"] = row["decoder"]
            row["decoder"] = row.pop("decoder_mean_preserving")
    record["mean_preserving"] = bool(net.mean_preserving)
    record["uncertainty"] = task.error_model(net)
    for f, row in table.items():
        row.update(base[f])
    record.update(
        kind="decoder",
        steps=step,
        seconds=round(time.perf_counter() - t0, 3),
        validation={str(f): {k: round(v, 4) for k, v in row.items()} for f, row in table.items()},
        z_check={k: round(v, 4) for k, v in zc.items()} if zc else None,
        choice={str(f): _winner(row, zc) for f, row in table.items()},
        gain_db={
            str(f): round(row["decoder"] - max(row[k] for k in BASELINES), 4)
            for f, row in table.items()
        },
    )
    _save(model_dir, best)
    model_dir.update_meta(spatial=record)
    yield Progress(
        step=step,
        seconds=time.perf_counter() - t0,
        loss=loss_v,
        psnr=best_psnr,
        message="spatial: done (" + summary(record) + ")",
    )
    return record


def train_with_spatial(
    model_dir: ModelDir,
    config: TrainConfig,
    stop: Callable[[], bool],
    temporal: Callable[[ModelDir, TrainConfig, Callable[[], bool]], Iterator[Progress]],
) -> Iterator[Progress]:
    """The spatial part first (its share of the time limit), then the ``temporal`` trainer with
    the rest; meta.json's ``train_seconds`` counts both."""
    shape = tuple(int(s) for s in model_dir.shape)
    t0 = time.perf_counter()
    record = yield from train_spatial(model_dir, config, stop, spatial_seconds(config, shape))
    if record is not None and config.time_limit is not None:
        left = max(float(config.time_limit) - (time.perf_counter() - t0), 1e-3)
        config = config.model_copy(update={"time_limit": left})
    for p in temporal(model_dir, config, stop):
        if p.done and record is not None:
            fresh = ModelDir(model_dir.path)
            spent = float(fresh.meta.get("train_seconds") or 0.0) + float(record.get("seconds", 0))
            model_dir.meta.update(fresh.meta)
            model_dir.update_meta(train_seconds=round(spent, 3), spatial=record)
            p.message = f"{p.message}; {summary(record)}"
        yield p


def split_text(config: TrainConfig, shape: tuple[int, ...]) -> str | None:
    """How the training time is split between space and time, in words (None: no spatial part)."""
    params = resolve_params(config)
    if not wanted(params, shape):
        return None
    if shape[0] == 1:
        return "a single volume: all of it trains the z decoder (space)"
    share = params.spatial_share
    if config.time_limit:
        sec = config.time_limit * share
        return (
            f"z decoder (space) first for at most {sec:.0f} s ({share:.0%}) or "
            f"{min(config.steps or params.spatial_steps, params.spatial_steps)} steps, then time for "
            "the rest"
        )
    n = min(config.steps or params.spatial_steps, params.spatial_steps)
    return f"z decoder (space) first for {n} steps, then time"
