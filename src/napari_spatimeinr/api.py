"""The Python API: the one facade that the CLI and the napari widgets both call.

Typical use::

    from napari_spatimeinr import api

    for p in api.train("movie.tif", "movie.spatimeinr", {"time_limit": 120}):
        print(p.step, p.loss)
    arr = api.render("movie.spatimeinr", scale_t=4, scale_zyx=(2, 1, 1))   # lazy dask array
    plan = api.plan_render("movie.spatimeinr", scale_t=4, scale_zyx=(2, 1, 1))
    api.export(arr, "movie_x4.ome.tif", plan.meta)
    for o in api.render_outputs(plan, "x4.tif", uncertainty="x4_uncertainty.tif"):  # as the CLI
        api.export(o.array, o.path, o.meta)
    v = api.motion("movie.spatimeinr").interval(0)     # (vz, vy, vx) in µm/s, frames 0 -> 1
    api.export_motion("movie.spatimeinr", "movie_motion.ome.zarr")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dask.array as da

from .config import StackOptions, TrainConfig, build
from .data.stack import Stack4D
from .errors import SpatimeINRError
from .io.meta import OutputMeta
from .methods import get_method
from .model_dir import ModelDir, create_model_dir
from .render.lazy import (
    RenderOutput,
    RenderPlan,
    estimate_seconds,
    plan_render,
    render,
    render_outputs,
    render_plan,
    uncertainty_path,
)
from .train.progress import Progress

__all__ = [
    "ModelDir",
    "OutputMeta",
    "Progress",
    "RenderOutput",
    "RenderPlan",
    "Stack4D",
    "estimate_seconds",
    "evaluate",
    "export",
    "export_motion",
    "motion",
    "open_model",
    "plan_render",
    "read",
    "render",
    "render_outputs",
    "render_plan",
    "train",
    "train_config",
    "uncertainty_path",
]


def read(
    path: str | Path,
    *,
    axes: str | None = None,
    channel: int | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    frame_interval: float | None = None,
) -> Stack4D:
    """Read a stack (TIFF, OME-TIFF, NIfTI, OME-Zarr, .npy) as a canonical TZYX :class:`Stack4D`."""
    from .io.read import read_stack

    opts = build(
        StackOptions,
        {
            "axes": axes,
            "channel": channel,
            "voxel_size": voxel_size,
            "frame_interval": frame_interval,
        },
        "read options",
    )
    return read_stack(path, **opts.model_dump())


def train_config(
    config: TrainConfig | dict[str, Any] | None = None, **overrides: Any
) -> TrainConfig:
    """A validated :class:`TrainConfig` from a config object or dict plus keyword overrides."""
    base = config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    return build(TrainConfig, base, "training configuration")


def train(
    source: str | Path | Stack4D | Sequence[str | Path | Stack4D],
    out_dir: str | Path,
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    read_options: dict[str, Any] | None = None,
    force: bool = False,
    init_from: str | Path | None = None,
) -> Iterator[Progress]:
    """Train a model of ``source`` into ``out_dir``: a generator of :class:`Progress` records.

    ``source`` may be a list of stacks (paths or :class:`Stack4D`): one model is trained on all of
    them (the ``fast`` preset; see :func:`napari_spatimeinr.model_dir.create_model_dir` for how they
    are stored); it renders the first, and the others with ``render(..., input=...)``.
    ``init_from``: a trained model directory to start from (a warm start); its method, preset and
    engine parameters are used unless ``config`` sets them, its weights must fit (one clear error
    otherwise), and ``meta.json["init_from"]`` records it.

    The directory is created atomically before the first record; it is usable (renderable) once a
    method's first checkpoint is written and always when the generator ends, also after ``stop()``
    returned True. ``resume=True`` continues the training stored in ``out_dir`` (``source`` is then
    only checked to be the same data, when given as a path).

    Before any work, :func:`napari_spatimeinr.limits.check_train` refuses a model that would not
    fit the disk (the input, its flows) or a training that would not fit the memory;
    ``force=True`` skips the disk check only. An unwritable ``out_dir`` is refused by name.
    """
    t_setup = time.perf_counter()
    from .limits import check_train, check_writable

    cfg = train_config(config)
    should_stop = stop or (lambda: False)
    if resume:
        md = ModelDir(out_dir)
        md.remove_stale_temporaries()  # a killed run may have died mid-write
        if md.config.method != cfg.method:
            raise SpatimeINRError(
                f"--resume: {out_dir} holds a {md.config.method!r} model, not {cfg.method!r}."
            )
        stored = md.config.model_dump()
        # What may change on resume: how long to go on, and where to run.
        for key in ("steps", "time_limit", "device", "checkpoint_every"):
            value = getattr(cfg, key)
            if value is not None and key in cfg.model_fields_set:
                stored[key] = value
        cfg = build(TrainConfig, stored, "training configuration")
    else:
        check_writable(out_dir, "model directory")
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if not sources:
            raise SpatimeINRError("No input stack was given: name at least one.")
        stacks = [s if isinstance(s, Stack4D) else read(s, **(read_options or {})) for s in sources]
        record = None
        if init_from is not None:
            from .reuse import check_init_from, init_from_record, warm_config

            src = ModelDir(init_from)
            record = init_from_record(src)
            values = warm_config(src, cfg.model_dump(), set(cfg.model_fields_set))
            cfg = build(TrainConfig, values, "training configuration")
            check_init_from(src, cfg, [s.shape for s in stacks])
        if len(stacks) > 1:
            _check_several(stacks, cfg)
        for s in stacks:
            check_train(s.shape, cfg.method, cfg.preset, out_dir, force=force)
        md = create_model_dir(out_dir, stacks[0], cfg, overwrite=overwrite, extra_stacks=stacks[1:])
        if record is not None:
            md.update_meta(init_from=record)
    if cfg.time_limit is not None:  # the limit covers reading and writing the input too
        spent = time.perf_counter() - t_setup
        cfg = cfg.model_copy(update={"time_limit": max(cfg.time_limit - spent, 1.0)})
    yield from get_method(cfg.method).train(md, cfg, should_stop)


def _check_several(stacks: list[Stack4D], cfg: TrainConfig) -> None:
    """Several inputs train the motion engine's refiner; they must be of one kind."""
    from .model.presets import resolve_params

    if cfg.method != "spatimeinr" or not resolve_params(cfg).motion:
        what = cfg.method if cfg.method != "spatimeinr" else f"spatimeinr {cfg.preset}"
        raise SpatimeINRError(
            f"Several inputs train one model with the spatimeinr fast preset only, not {what}: "
            "train one model per stack, or use --preset fast."
        )
    kinds = {(s.shape[1] > 1, s.shape[0] > 1) for s in stacks}
    if len(kinds) > 1:
        listing = ", ".join(f"{s.name} (T={s.shape[0]}, Z={s.shape[1]})" for s in stacks)
        raise SpatimeINRError(
            f"Several inputs must all be 2D+t or all 3D+t time-lapses: {listing}. Train them in "
            "separate models."
        )
    if all(s.shape[0] == 1 for s in stacks):
        raise SpatimeINRError("Several inputs train the time part: give time-lapses (T > 1).")
    from .limits import TrainCost, check_memory

    need = sum(TrainCost(s.shape, cfg.method, cfg.preset).peak_bytes for s in stacks)
    check_memory(  # the refiner's examples of every stack are held together
        need,
        f"training on {len(stacks)} stacks",
        "Train on fewer or smaller stacks (crop them), or on a machine with more memory.",
    )


def open_model(path: str | Path) -> ModelDir:
    """Open a model directory (raises a clear error if it is missing or incomplete)."""
    return ModelDir(path)


def export(
    darr: da.Array,
    path: str | Path,
    meta: OutputMeta,
    dtype: str = "float32",
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    force: bool = False,
) -> Path:
    """Write a lazy TZYX array chunk by chunk; the format follows the suffix of ``path``.

    Refused before any work when it cannot fit (see :mod:`napari_spatimeinr.limits`);
    ``force=True`` skips the free-disk check only.
    """
    from .io.write import write_array

    return write_array(
        darr,
        path,
        meta,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
        force=force,
    )


def motion(model_dir: str | Path | ModelDir, device: str = "auto"):
    """The velocity field a motion model recovered (:class:`.velocity.VelocityField`).

    ``motion(m).interval(t)`` is the velocity between frames ``t`` and ``t+1`` at frame ``t``'s
    voxels, (3, Z, Y, X) float32, components (vz, vy, vx) in µm/s. A model without motion (the
    classical methods, the ``paper`` preset) is refused with a message saying so.
    """
    from .velocity import VelocityField

    return VelocityField(model_dir, device)


def export_motion(
    model_dir: Any,
    path: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    device: str = "auto",
    force: bool = False,
) -> Path:
    """Write the velocity field (TCZYX, µm/s) of a model directory (or of an open
    :func:`motion` field) to an OME-TIFF (.ome.tif, .tif) or OME-Zarr file.

    See :func:`napari_spatimeinr.velocity.export_motion`.
    """
    from .velocity import export_motion as _export

    return _export(
        model_dir,
        path,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
        device=device,
        force=force,
    )


def evaluate(*args: Any, **kwargs: Any):
    """Hold-out evaluation against interpolation baselines (see :mod:`.evaluate.protocol`)."""
    from .evaluate.protocol import run_evaluation

    return run_evaluation(*args, **kwargs)


# Re-exported so scripts need only ``api``.
render = render
plan_render = plan_render
render_plan = render_plan
render_outputs = render_outputs
uncertainty_path = uncertainty_path
estimate_seconds = estimate_seconds
