"""The hold-out check: withhold data, reconstruct it, score it beside the baselines.

:func:`run_evaluation` is a generator shared by ``spatimeinr evaluate``, ``api.evaluate`` and the QC
widget: it yields :class:`~napari_spatimeinr.core.progress.Progress` records while it works and, last,
one :class:`EvalResult` holding the report (the JSON of DESIGN.md, "Evaluation protocol") and the
arrays (truth, input, every reconstruction). When ``stop()`` turns True it returns at the next step
without a result.

The evaluated method is trained on the degraded input and rendered on the truth grid through the
same rails as ``spatimeinr train`` / ``render`` (:func:`reconstruct`); the baselines are computed
directly (:mod:`.baselines`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...core.errors import SpatimeINRError
from ...core.progress import Progress
from ...data.stack import ChannelStack, Stack4D
from .baselines import CLASSICAL, baselines_for, best_smoothed, interpolate, motion_interpolate
from .metrics import flicker_ratio, score, truth_range
from .withhold import Degraded, degrade

METHODS = ("spatimeinr", *CLASSICAL)


@dataclass
class EvalResult:
    """The outcome of :func:`run_evaluation`.

    Attributes:
        report: the report dict (stable keys, see DESIGN.md; written by ``report.write_report``).
        truth: TZYX float32, raw units: the original data on the reconstruction grid.
        input: TZYX float32, raw units: the degraded input the method saw.
        reconstructions: method name → TZYX float32 on the truth grid, raw units (the evaluated
            method first, then the baselines).
        degraded: the :class:`~.degrade.Degraded` record (scored frames, layer scales, input stack).
        uncertainty: the evaluated method's uncertainty map (temporal tasks of the fast engine).
    """

    report: dict[str, Any]
    truth: np.ndarray
    input: np.ndarray
    reconstructions: dict[str, np.ndarray] = field(default_factory=dict)
    degraded: Degraded | None = None
    #: the evaluated method's uncertainty map (raw units, truth grid), when it makes one
    uncertainty: np.ndarray | None = None
    #: a multi-channel stack: the result of each channel (this one is channel 0's)
    channels: list[EvalResult] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.report["method"])

    @property
    def scored(self) -> list[int]:
        return list(self.report["scored_frames"])

    @property
    def truth_scale(self) -> tuple[float, float, float, float]:
        """napari ``scale`` (t, z, y, x) of the truth and of every reconstruction."""
        return self.degraded.truth_scale if self.degraded else (1.0, 1.0, 1.0, 1.0)

    @property
    def input_scale(self) -> tuple[float, float, float, float]:
        return self.degraded.input_scale if self.degraded else (1.0, 1.0, 1.0, 1.0)

    @property
    def input_translate(self) -> tuple[float, float, float, float]:
        return self.degraded.input_translate if self.degraded else (0.0, 0.0, 0.0, 0.0)

    def error(self, name: str | None = None) -> np.ndarray:
        """Absolute error ``|reconstruction - truth|`` (raw units) of ``name`` (default: the method)."""
        return np.abs(self.reconstructions[name or self.method] - self.truth)


def check_method_and_baselines(
    task: str, method: str, baselines: Sequence[str] | None
) -> tuple[str, ...]:
    """Validate the method name and return the baselines to compute, in report order."""
    if method not in METHODS:
        raise SpatimeINRError(f"Unknown method {method!r}: choose one of {', '.join(METHODS)}.")
    from ...engines.registry import get_method

    get_method(method)  # fail before any work if the method cannot be loaded
    allowed = baselines_for(task)
    if baselines is None:
        return allowed
    bad = [b for b in baselines if b not in allowed]
    if bad:
        raise SpatimeINRError(
            f"Unknown baseline(s) {', '.join(map(repr, bad))} for a {task} task: choose from "
            f"{', '.join(allowed)}."
        )
    return tuple(b for b in allowed if b in baselines)


def reconstruct(
    stack: Stack4D | ChannelStack,
    scale_t: float,
    scale_zyx: tuple[float, float, float],
    *,
    method: str = "spatimeinr",
    preset: str = "fast",
    time_limit: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    work_dir: str | Path | None = None,
    stop: Callable[[], bool] | None = None,
    uncertainty: bool = False,
    params: dict[str, Any] | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, float, np.ndarray | None] | None]:
    """Train ``method`` on ``stack`` and render it at ×(scale_t, scale_zyx): the one plug-in point.

    Goes through the same train and render workflows as the CLI. Yields Progress records and
    returns ``(array float32 in raw units, train_seconds, uncertainty map or None)``, or ``None``
    when stopped; the uncertainty map (raw units, same grid) is rendered when ``uncertainty`` is
    True and the trained model can make one (:func:`.render.lazy.check_uncertainty`). The model
    directory lives in a temporary folder inside ``work_dir`` (kept as ``work_dir/model`` when
    ``work_dir`` is given, so it can be inspected or rendered again). ``params``: hyperparameters
    that override the preset's (the fields of :class:`~napari_spatimeinr.core.config.SpatimeINRParams`).

    A :class:`ChannelStack` trains one model of all its channels; the arrays and uncertainty
    maps are then lists, one per channel.
    """
    from ...store.model_dir import ModelDir
    from ..train import train

    should_stop = stop or (lambda: False)
    config: dict[str, Any] = {"method": method, "seed": seed}
    if method == "spatimeinr":
        config.update(preset=preset, time_limit=time_limit, steps=steps, device=device)
        if params:
            config["params"] = dict(params)
    with tempfile.TemporaryDirectory(prefix="spatimeinr-eval-") as tmp:
        path = Path(work_dir) / "model" if work_dir is not None else Path(tmp) / "model"
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for p in train(stack, path, config, overwrite=True, stop=should_stop):
            yield replace(p, message=f"train {method}: {p.message}".rstrip(": "), done=False)
        if should_stop():
            return None
        meta = ModelDir(path).meta
        # a multi-channel model: the training of all its channels (one motion, then each channel)
        train_seconds = float(meta.get("channel_train_seconds") or meta.get("train_seconds") or 0.0)
        if method == "spatimeinr" and train_seconds <= 0:
            train_seconds = time.perf_counter() - t0
        n_ch = stack.n if isinstance(stack, ChannelStack) else 1
        outs: list[np.ndarray] = []
        uncs: list[np.ndarray | None] = []
        for c in range(n_ch):
            which = {"channel": c} if n_ch > 1 else {}
            got = yield from _render_all(
                path, scale_t, scale_zyx, device, uncertainty, should_stop, method, **which
            )
            if got is None:
                return None
            outs.append(got[0])
            uncs.append(got[1])
        if work_dir is None:
            _forget_renderer(path)
            for sub in (Path(path) / "channels").glob("*"):
                _forget_renderer(sub)
    if n_ch > 1:
        return outs, train_seconds, uncs  # type: ignore[return-value]
    return outs[0], train_seconds, uncs[0]


def _render_all(
    path: Path,
    scale_t: float,
    scale_zyx: tuple[float, float, float],
    device: str,
    uncertainty: bool,
    should_stop: Callable[[], bool],
    method: str,
    channel: int | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None] | None]:
    """The whole render of a model (one channel of it with ``channel``), with its uncertainty
    map when asked and possible; None when stopped."""
    from ...render.lazy import plan_render, render_plan
    from ...store.model_dir import ModelDir

    plan = plan_render(path, scale_t, scale_zyx, device=device, channel=channel)
    arr = render_plan(plan)
    unc_arr = None
    if uncertainty:
        from ...render.lazy import check_uncertainty

        try:
            check_uncertainty(ModelDir(plan.model_dir))
            unc_arr = render_plan(plan, uncertainty=True)
        except SpatimeINRError:
            unc_arr = None
    out = np.empty(arr.shape, dtype=np.float32)
    unc = np.empty(arr.shape, dtype=np.float32) if unc_arr is not None else None
    n_t = arr.shape[0]
    t1 = time.perf_counter()
    t0 = 0
    what = f"render {method}" + (f" channel {channel}" if channel is not None else "")
    for size in arr.chunks[0]:  # whole chunks: a chunk is computed once, not once per frame
        if should_stop():
            return None
        out[t0 : t0 + size] = arr[t0 : t0 + size].compute()
        if unc is not None and unc_arr is not None:
            unc[t0 : t0 + size] = unc_arr[t0 : t0 + size].compute()
        t0 += size
        dt = time.perf_counter() - t1
        yield Progress(step=t0, total=n_t, seconds=dt, eta=dt / t0 * (n_t - t0), message=what)
    return out, unc


def _forget_renderer(path: Path) -> None:
    """Drop the cached renderer of a temporary model directory (it is about to be deleted)."""
    from ...render.lazy import clear_renderer_cache

    clear_renderer_cache(path)


def _read(
    source: str | Path | Stack4D | ChannelStack, read_options: dict[str, Any] | None
) -> Stack4D | ChannelStack:
    if isinstance(source, (Stack4D, ChannelStack)):
        return source
    from ..train import read

    return read(source, **(read_options or {}), all_channels=True)


def _method_entry(
    pred: np.ndarray,
    deg: Degraded,
    low: float,
    high: float,
    train_seconds: float,
    seconds: float,
    task: str,
) -> dict[str, Any]:
    entry = score(pred, deg.truth, deg.scored, low, high)
    entry["train_seconds"] = float(train_seconds)
    entry["seconds"] = float(seconds)
    if task == "temporal":  # one noise level for measured and new frames
        kept = [t for t in range(deg.truth.shape[0]) if t not in set(deg.scored.tolist())]
        entry["flicker"] = flicker_ratio(pred, kept)
        entry["flicker_truth"] = flicker_ratio(deg.truth, kept)
    return entry


def _run_channels(
    stack: ChannelStack,
    task: str,
    k: int,
    z_only: bool,
    method: str,
    preset: str,
    time_limit: float | None,
    steps: int | None,
    seed: int,
    wanted: Sequence[str],
    work_dir: str | Path | None,
    should_stop: Callable[[], bool],
    device: str,
    params: dict[str, Any] | None,
) -> Iterator[Progress | EvalResult]:
    """:func:`run_evaluation` of a multi-channel stack: every channel degraded alike, its
    baselines computed on it alone, one model of all the degraded channels (one motion), each
    channel of its render scored against its own truth. The report is channel 0's, plus
    ``"channels"``: ``[{"name", "results", "best_baseline", "uncertainty"?}, ...]``."""
    degs = [degrade(ch, task, k, z_only) for ch in stack.channels]
    yield Progress(
        step=0,
        total=None,
        message=f"{task} ×{k}: {stack.n} channels, input {degs[0].input.shape} each",
    )
    per = []
    for c, deg in enumerate(degs):
        got = yield from _baselines(deg, task, k, wanted, should_stop)
        if got is None:
            return
        per.append(got)
        yield Progress(step=c + 1, total=stack.n, message=f"baselines of {stack.names[c]}")
    t0 = time.perf_counter()
    degraded = ChannelStack([d.input for d in degs], stack.names, stack.colors)
    out = yield from reconstruct(
        degraded,
        degs[0].scale_t,
        degs[0].scale_zyx,
        method=method,
        preset=preset,
        time_limit=time_limit,
        steps=steps,
        seed=seed,
        device=device,
        work_dir=work_dir,
        stop=should_stop,
        uncertainty=task == "temporal",
        params=params,
    )
    if out is None:
        return
    preds, train_seconds, uncs = out
    seconds = time.perf_counter() - t0
    results_of: list[EvalResult] = []
    for c, (deg, (results, recon, low, high)) in enumerate(zip(degs, per, strict=True)):
        entry = _method_entry(preds[c], deg, low, high, train_seconds, seconds, task)
        results = {method: entry, **{n: v for n, v in results.items() if n != method}}
        recon = {method: preds[c], **{n: v for n, v in recon.items() if n != method}}
        report = build_report(
            stack.channels[c],
            deg,
            task,
            k,
            z_only,
            method,
            preset,
            time_limit,
            steps,
            seed,
            low,
            high,
            results,
        )
        report["channel"] = stack.names[c]
        if uncs[c] is not None:
            report["uncertainty"] = uncertainty_entry(
                uncs[c], preds[c], deg.truth, deg.scored, seed
            )
        results_of.append(EvalResult(report, deg.truth, deg.input.data, recon, deg, uncs[c]))
    first = results_of[0]
    first.report = dict(first.report)
    first.report["channel_names"] = list(stack.names)
    first.report["channels"] = [
        {
            "name": stack.names[c],
            "results": r.report["results"],
            "best_baseline": r.report["best_baseline"],
            **({"uncertainty": r.report["uncertainty"]} if "uncertainty" in r.report else {}),
        }
        for c, r in enumerate(results_of)
    ]
    first.channels = results_of
    yield first


def run_evaluation(
    source: str | Path | Stack4D,
    task: str,
    factor: int,
    z_only: bool = False,
    method: str = "spatimeinr",
    preset: str = "fast",
    time_limit: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    baselines: Sequence[str] | None = None,
    work_dir: str | Path | None = None,
    stop: Callable[[], bool] | None = None,
    *,
    device: str = "auto",
    read_options: dict[str, Any] | None = None,
    force: bool = False,
    params: dict[str, Any] | None = None,
) -> Iterator[Progress | EvalResult]:
    """Hold-out evaluation of ``method`` against the baselines (DESIGN.md, "Evaluation protocol").

    Args:
        source: a path (read with ``api.read(path, **read_options)``) or a :class:`Stack4D`.
        task: "temporal" (keep every ``factor``-th frame) or "spatial" (mean-pool by ``factor``).
        factor: integer >= 2.
        z_only: spatial task along z only.
        method: "spatimeinr" (trained on the degraded input) or "cubic"/"linear"/"nearest".
        preset, time_limit, steps, seed, device: training options of the evaluated method.
        baselines: a subset of nearest, linear, cubic, motion (temporal only), smoothed;
            default all of them.
        work_dir: keep the trained model in ``work_dir/model`` (default: a temporary folder).
        stop: polled between steps; when it returns True the generator returns without a result.
        force: skip the free-disk check of the temporary model (only that check).
        params: hyperparameters of the evaluated method that override the preset's (e.g.
            ``{"latent_dim": 16}``; fields of :class:`~napari_spatimeinr.core.config.SpatimeINRParams`).

    Before any work, :func:`napari_spatimeinr.limits.check_evaluate` refuses a stack whose
    predictions and model would not fit the memory or the disk.

    Yields:
        Progress records, then one :class:`EvalResult` (the last item).
    """
    should_stop = stop or (lambda: False)
    wanted = check_method_and_baselines(task, method, baselines)
    stack = _read(source, read_options).validate()
    from ...core.config import TrainConfig
    from ...engines.presets import engine_of
    from ...limits import check_evaluate

    engine = engine_of(TrainConfig(method=method, preset=preset, params=params))  # type: ignore[arg-type]
    check_evaluate(stack.shape, engine, work_dir, force=force)
    k = int(factor)
    if isinstance(stack, ChannelStack):
        yield from _run_channels(
            stack,
            task,
            k,
            z_only,
            method,
            preset,
            time_limit,
            steps,
            seed,
            wanted,
            work_dir,
            should_stop,
            device,
            params,
        )
        return
    deg = degrade(stack, task, factor, z_only)
    truth = deg.truth
    yield Progress(step=0, total=None, message=f"{task} ×{k}: input {deg.input.shape}")
    got = yield from _baselines(deg, task, k, wanted, should_stop)
    if got is None:
        return
    results, recon, low, high = got

    t0 = time.perf_counter()
    out = yield from reconstruct(
        deg.input,
        deg.scale_t,
        deg.scale_zyx,
        method=method,
        preset=preset,
        time_limit=time_limit,
        steps=steps,
        seed=seed,
        device=device,
        work_dir=work_dir,
        stop=should_stop,
        uncertainty=task == "temporal",
        params=params,
    )
    if out is None:
        return
    pred, train_seconds, unc = out
    if pred.shape != truth.shape:  # a broken method; the grid convention guarantees equality
        raise SpatimeINRError(
            f"The {method} render has shape {pred.shape}, the truth {truth.shape}: please report "
            "this bug."
        )
    entry_method = score(pred, truth, deg.scored, low, high)
    entry_method["train_seconds"] = float(train_seconds)
    entry_method["seconds"] = float(time.perf_counter() - t0)
    if task == "temporal":  # one noise level for measured and new frames (a movie without pulses)
        kept = [t for t in range(truth.shape[0]) if t not in set(deg.scored.tolist())]
        entry_method["flicker"] = flicker_ratio(pred, kept)
        entry_method["flicker_truth"] = flicker_ratio(truth, kept)
    results = {method: entry_method, **{k_: v for k_, v in results.items() if k_ != method}}
    recon = {method: pred, **{k_: v for k_, v in recon.items() if k_ != method}}

    report = build_report(
        stack, deg, task, k, z_only, method, preset, time_limit, steps, seed, low, high, results
    )
    if unc is not None:
        report["uncertainty"] = uncertainty_entry(unc, pred, truth, deg.scored, seed)
    yield EvalResult(
        report=report,
        truth=truth,
        input=deg.input.data,
        reconstructions=recon,
        degraded=deg,
        uncertainty=unc,
    )


def _baselines(
    deg: Degraded, task: str, k: int, wanted: Sequence[str], should_stop: Callable[[], bool]
) -> Generator[Progress, None, tuple[dict, dict, float, float] | None]:
    """The baselines of one degraded stack: (results, reconstructions, low, high) with the
    truth's intensity range the scores use; None when stopped."""
    truth = deg.truth
    low, high = truth_range(truth[deg.scored])

    results: dict[str, dict[str, Any]] = {}
    recon: dict[str, np.ndarray] = {}
    smoothed_bases = [*CLASSICAL, "motion"] if task == "temporal" else list(CLASSICAL)
    to_compute = [b for b in smoothed_bases if b in wanted or "smoothed" in wanted]

    def add(name: str, pred: np.ndarray, seconds: float, train_seconds: float = 0.0, **kw):
        entry = score(pred, truth, deg.scored, low, high)
        entry["train_seconds"] = float(train_seconds)
        entry["seconds"] = float(seconds)
        entry.update(kw)
        results[name] = entry
        recon[name] = pred

    n_steps = len(to_compute) + ("smoothed" in wanted)
    for i, name in enumerate(to_compute):
        if should_stop():
            return None
        t0 = time.perf_counter()
        if name == "motion":
            pred = yield from motion_interpolate(deg.input.data, k, should_stop)
            if pred is None:
                return None
        else:
            pred = interpolate(deg.input.data, deg.scale_t, deg.scale_zyx, name)
        add(name, pred, time.perf_counter() - t0)
        yield Progress(step=i + 1, total=n_steps, message=f"baseline {name}")
    if "smoothed" in wanted:
        t0 = time.perf_counter()
        bases = {b: recon[b] for b in smoothed_bases if b in recon}
        base, sigma, pred, table = best_smoothed(bases, truth, deg.scored, low, high)
        add("smoothed", pred, time.perf_counter() - t0, base=base, sigma=sigma, candidates=table)
        yield Progress(step=n_steps, total=n_steps, message="baseline smoothed")
    # bases computed only for the smoothed baseline are not reported
    for name in [b for b in results if b not in wanted]:
        results.pop(name)
        recon.pop(name)
    if should_stop():
        return None
    return results, recon, low, high


def uncertainty_entry(
    unc: np.ndarray, pred: np.ndarray, truth: np.ndarray, scored: Sequence[int], seed: int = 0
) -> dict[str, Any]:
    """The report's ``"uncertainty"``: how well the predicted expected |error| ranks the actual
    |error| over the scored (left-out) frames' voxels, beside the trivial maps (rendered
    intensity, distance in frames to the nearest measured frame, their product), and per frame
    the mean predicted and actual |error| (raw units)."""
    from ...engines.fast.uncertainty import report_metrics

    scored = [int(t) for t in scored]
    kept = np.array([t for t in range(truth.shape[0]) if t not in set(scored)], dtype=np.float32)
    dist = np.array([np.abs(kept - t).min() if len(kept) else 0.0 for t in scored], np.float32)
    err = np.abs(pred[scored] - truth[scored])
    entry = report_metrics(unc[scored], err, pred[scored], dist[:, None, None, None], seed)
    entry["per_frame"] = [
        {"t": t, "mean_predicted": float(unc[t].mean()), "mean_abs_error": float(err[j].mean())}
        for j, t in enumerate(scored)
    ]
    return entry


def build_report(
    stack: Stack4D,
    deg: Degraded,
    task: str,
    factor: int,
    z_only: bool,
    method: str,
    preset: str,
    time_limit: float | None,
    steps: int | None,
    seed: int,
    low: float,
    high: float,
    results: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The report dict: DESIGN.md's stable keys first, then context (also stable once added)."""
    baseline_names = [n for n in results if n != method]
    best = max(
        (n for n in baseline_names if results[n]["psnr"] is not None),
        key=lambda n: results[n]["psnr"],
        default=None,
    )
    return {
        "task": task,
        "factor": factor,
        "z_only": bool(z_only),
        "input_shape": list(deg.input.shape),
        "truth_shape": list(deg.truth.shape),
        "results": results,
        "method": method,
        "preset": preset if method == "spatimeinr" else None,
        "time_limit": time_limit,
        "steps": steps,
        "seed": seed,
        "baselines": baseline_names,
        "best_baseline": best,
        "scored_frames": [int(t) for t in deg.scored],
        "pooled_axes": deg.pooled_axes,
        "intensity_range": [low, high],
        "metrics": (
            "PSNR (dB, data range 1) and SSIM (scikit-image, 7x7 window, per 2D y-x slice) on "
            "intensities normalized by the scored truth's 0.1/99.9 percentiles; overall PSNR from "
            "the MSE over all scored voxels"
        ),
        "source": stack.source_path or stack.name,
        "source_sha256": stack.source_sha256,
        "voxel_size": list(stack.voxel_size),
        "frame_interval": stack.frame_interval,
        "software_version": __version__,
    }
