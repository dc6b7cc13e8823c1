"""Training a model directory from one or several stacks: checks, warm starts, resume, then the engine.

:func:`train` is what ``spatimeinr train``, the Train widget and :func:`napari_spatimeinr.api.train`
run: a generator of :class:`~napari_spatimeinr.core.progress.Progress` records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import SpatimeINRParams, StackOptions, TrainConfig, build, dump_yaml
from ..core.device import device_errors
from ..core.errors import SpatimeINRError
from ..core.progress import Progress
from ..data.stack import ChannelStack, Stack4D, sha256_file
from ..engines.presets import engine_of, resolve_params
from ..engines.registry import get_method
from ..render.apply import _dims
from ..store.model_dir import ModelDir, channel_dirs, create_model_dir, n_channels


def read(
    path: str | Path,
    *,
    axes: str | None = None,
    channel: int | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    frame_interval: float | None = None,
    reader: str | None = None,
    mapped: bool = False,
    all_channels: bool = False,
) -> Stack4D | ChannelStack:
    """Read a stack (TIFF, OME-TIFF, NIfTI, OME-Zarr, .npy; .czi, .nd2, .lif with the ``formats``
    extra) as a canonical TZYX :class:`Stack4D`. ``reader="bioio"`` reads OME-TIFF and OME-Zarr
    through bioio too (default: ``$SPATIMEINR_READER``, else by suffix). ``mapped``: an
    uncompressed TZYX file stays memory-mapped in its own dtype (to train on it:
    :meth:`Stack4D.mapped`).

    ``all_channels=True``: a file of two or more channels read without ``channel`` gives a
    :class:`ChannelStack` (every channel; one model of it: :func:`train`) instead of a refusal."""
    from ..io.read import read_channels, read_stack

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
    if all_channels:
        return read_channels(path, **opts.model_dump(), reader=reader, mapped=mapped)
    return read_stack(path, **opts.model_dump(), reader=reader, mapped=mapped)


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
    motion_channel: int | None = None,
) -> Iterator[Progress]:
    """Train a model of ``source`` into ``out_dir``: a generator of :class:`Progress` records.

    ``source`` may be a :class:`ChannelStack` (a multi-channel stack, e.g. ``read(path,
    all_channels=True)``): one model for all channels (:func:`train_channels`; ``motion_channel``:
    estimate the motion from that channel instead of the mean of all).

    ``source`` may be a list of stacks (paths or :class:`Stack4D`): one model is trained on all of
    them (the ``fast`` preset; see :func:`napari_spatimeinr.store.model_dir.create_model_dir` for how they
    are stored); it renders the first, and the others with ``render(..., input=...)``.
    ``init_from``: a trained model directory to start from (a warm start); its method, preset and
    engine parameters are used unless ``config`` sets them, its weights must fit (one clear error
    otherwise), and ``meta.json["init_from"]`` records it.

    The directory is created atomically before the first record; it is usable (renderable) once a
    method's first checkpoint is written and always when the generator ends, also after ``stop()``
    returned True. ``resume=True`` continues the training stored in ``out_dir``; ``source`` (when
    not None) must then be the data it was trained on (:func:`check_same_input`).

    Before any work, :func:`napari_spatimeinr.limits.check_train` refuses a model that would not
    fit the disk (the input, its flows) or a training that would not fit the memory;
    ``force=True`` skips the disk check only. An unwritable ``out_dir`` is refused by name.
    """
    t_setup = time.perf_counter()
    from ..core.resources import check_writable, tune_malloc

    tune_malloc()  # a training process holds no freed frames (glibc)
    from ..limits import check_train

    cfg = train_config(config)
    should_stop = stop or (lambda: False)
    if resume:
        md = ModelDir(out_dir)
        if n_channels(md) > 1:
            raise SpatimeINRError(
                f"--resume: {out_dir} is a model of {n_channels(md)} channels, which cannot be "
                "resumed yet: train it again with --overwrite (or one channel with --channel N)."
            )
        check_same_input(md, source)
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
        stacks = [
            s
            if isinstance(s, (Stack4D, ChannelStack))
            else read(s, **(read_options or {}), mapped=True)
            for s in sources
        ]
        channels = check_channels(stacks, cfg, init_from, motion_channel)
        if channels is not None:
            stacks = [channels.channels[0]]
        record = None
        if init_from is not None:
            from ..store.records import init_from_record

            src = ModelDir(init_from)
            record = init_from_record(src)
            values = warm_config(src, cfg.model_dump(), set(cfg.model_fields_set))
            cfg = build(TrainConfig, values, "training configuration")
            check_init_from(src, cfg, [s.shape for s in stacks])
        if len(stacks) > 1:
            _check_several(stacks, cfg)
        for s in stacks:
            dtype = str(s.extra.get("source_dtype") or "float32")
            mapped = not isinstance(s.data, np.ndarray) or isinstance(s.data, np.memmap)
            check_train(
                s.shape,
                engine_of(cfg),
                out_dir,
                force=force,
                dtype=dtype,
                mapped=mapped,
                channels=_n(channels),
            )
        md = create_model_dir(
            out_dir,
            stacks[0],
            cfg,
            overwrite=overwrite,
            extra_stacks=stacks[1:],
            channels=channels,
            motion_from=motion_channel,
        )
        # the model directory holds the input now (read from it a piece at a time): the stacks
        # read here are let go, so that training's memory does not grow with them
        stacks = sources = s = source = channels = None  # noqa: F841
        if record is not None:
            md.update_meta(init_from=record)
    if cfg.time_limit is not None:  # the limit covers reading and writing the input too
        spent = time.perf_counter() - t_setup
        cfg = cfg.model_copy(update={"time_limit": max(cfg.time_limit - spent, 1.0)})
    with device_errors():  # an operation the Apple GPU lacks: one line saying what to do
        if n_channels(md) > 1:
            yield from train_channels(md, cfg, should_stop)
        else:
            yield from get_method(cfg.method).train(md, cfg, should_stop)


def _n(channels: ChannelStack | None) -> int:
    return 1 if channels is None else channels.n


def check_channels(
    stacks: list[Stack4D | ChannelStack],
    cfg: TrainConfig,
    init_from: str | Path | None,
    motion_channel: int | None,
) -> ChannelStack | None:
    """The multi-channel stack to train, if the input is one; refuses, in one line, what cannot
    be trained so (several inputs, the paper preset, a warm start, --motion-channel out of range
    or without channels). The CLI calls it before saying anything."""
    multi = [s for s in stacks if isinstance(s, ChannelStack)]
    if not multi:
        if motion_channel is not None:
            raise SpatimeINRError(
                "--motion-channel chooses the channel the motion of a multi-channel stack is "
                "estimated from; this input has one channel: leave it out."
            )
        return None
    ch = multi[0]
    if len(stacks) > 1:
        raise SpatimeINRError(
            f"{ch.name} has {ch.n} channels: several inputs train one model of single-channel "
            "stacks only. Train the multi-channel stack alone, or choose one channel with "
            "--channel N."
        )
    if cfg.method == "spatimeinr" and engine_of(cfg) != "fast":
        raise SpatimeINRError(
            f"{ch.name} has {ch.n} channels: one model of all channels needs the fast preset "
            f"(or a classical method), not spatimeinr {cfg.preset}. Use --preset fast, or choose "
            "one channel with --channel N."
        )
    if init_from is not None:
        raise SpatimeINRError(
            f"{ch.name} has {ch.n} channels: --init-from warm-starts single-channel models only. "
            "Choose one channel with --channel N, or train without --init-from."
        )
    if motion_channel is not None and not 0 <= motion_channel < ch.n:
        raise SpatimeINRError(
            f"--motion-channel {motion_channel} is out of range: {ch.name} has channels "
            f"0..{ch.n - 1}."
        )
    return ch


#: with N channels trained one after the other, each trains this share of the steps of a
#: single-channel model × 1/N, so that the whole training costs at most 1.5× one single-channel model
CHANNEL_COST = 1.5


def train_channels(md: ModelDir, cfg: TrainConfig, stop: Callable[[], bool]) -> Iterator[Progress]:
    """Train a multi-channel model (:func:`napari_spatimeinr.store.model_dir.channel_dirs`).

    The fast engine on a time-lapse estimates the motion once for all channels, then trains each
    channel's z decoder, refiner and calibration (:mod:`napari_spatimeinr.engines.fast.channels`). Otherwise (a classical method, a single volume)
    each channel's model is trained by its method, one after the other: the time left is shared
    evenly by the channels still to train, and each trains ``CHANNEL_COST / N`` of the planned
    steps. Progress records count the steps of all channels; only the last record is ``done``.
    """
    from ..engines.fast import channels as fast_channels
    from ..engines.presets import total_steps

    t0 = time.perf_counter()
    dirs = channel_dirs(md)
    n = len(dirs)
    if fast_channels.applies(cfg, tuple(md.shape)):  # one motion for all channels
        final = None
        for p in fast_channels.train(md, cfg, stop):
            if p.done:
                final = p
                break
            yield p
        md.update_meta(channel_train_seconds=time.perf_counter() - t0)
        yield final or Progress(seconds=time.perf_counter() - t0, message="done", done=True)
        return
    names = md.meta.get("channel_names") or [f"C{k}" for k in range(n)]
    per_steps = max(1, math.ceil(total_steps(cfg) * CHANNEL_COST / n))
    params = resolve_params(cfg)
    per_spatial = max(1, math.ceil((params.spatial_steps or 1) * CHANNEL_COST / n))
    offset = 0
    last: Progress | None = None
    for k, sub in enumerate(dirs):
        update: dict[str, Any] = {"steps": per_steps}
        if cfg.method == "spatimeinr":  # the z decoder's steps are shared the same way
            base = cfg.params or SpatimeINRParams()
            update["params"] = base.model_copy(update={"spatial_steps": per_spatial})
        if k > 0 and cfg.method == "spatimeinr" and (dirs[k - 1].path / "model.pt").is_file():
            # a warm start from the channel before (its refiner and z decoder): the same motion,
            # the same kind of data; the starting weights are validated first and kept only if
            # training does not improve on them (docs/reuse.md: 60 s warm ≈ a full cold run)
            from ..store.records import init_from_record

            sub.update_meta(init_from=init_from_record(dirs[k - 1]))
        if cfg.time_limit is not None:
            left = cfg.time_limit - (time.perf_counter() - t0)
            update["time_limit"] = max(left / (n - k), 1.0)
        sub_cfg = cfg.model_copy(update=update)
        if k > 0:  # the top config.yaml stays the whole model's; each further channel its own
            sub.write_atomic("config.yaml", dump_yaml(sub_cfg).encode())
        last = None
        for p in get_method(cfg.method).train(sub, sub_cfg, stop):
            last = p
            p.message = f"channel {k} ({names[k]}): {p.message}".rstrip(": ")
            p.step += offset
            p.total = per_steps * n
            p.seconds = time.perf_counter() - t0
            if p.done:
                break
            yield p
        if last is not None:
            offset = last.step
        # after a Stop the channels still to train end at once (stop() stays True): each is
        # written untrained (its refiner the identity: motion-compensated interpolation), so the
        # model renders every channel, as a stopped single-channel model does
    steps = sum(int(ModelDir(d.path).meta.get("train_steps", 0)) for d in dirs)
    md.update_meta(channel_train_steps=steps, channel_train_seconds=time.perf_counter() - t0)
    final = last or Progress()
    final.done = True
    final.seconds = time.perf_counter() - t0
    yield final


def _check_several(stacks: list[Stack4D], cfg: TrainConfig) -> None:
    """Several inputs train the motion engine's refiner; they must be of one kind."""
    if engine_of(cfg) != "fast":
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
    from ..core.resources import check_memory
    from ..limits import TrainCost

    need = sum(TrainCost(s.shape, engine_of(cfg)).peak_bytes for s in stacks)
    check_memory(  # the refiner's examples of every stack are held together
        need,
        f"training on {len(stacks)} stacks",
        "Train on fewer or smaller stacks (crop them), or on a machine with more memory.",
    )


def warm_config(source: ModelDir, values: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """Training settings for a warm start: the source's method, preset and engine parameters
    (what shapes the weights), unless ``given`` (set explicitly) says otherwise."""
    out = dict(values)
    src = source.config
    for key in ("method", "preset", "params"):
        if key not in given:
            value = getattr(src, key)
            out[key] = value.model_dump() if hasattr(value, "model_dump") else value
    return out


def check_init_from(source: ModelDir, config: Any, shapes: Sequence[Sequence[int]]) -> None:
    """Refuse, in one message, a warm start whose weights do not fit the new training."""
    import torch

    from ..engines.fast.refiner import make_refiner
    from ..store import checkpoint

    if config.method != "spatimeinr":
        raise SpatimeINRError(
            f"--init-from needs --method spatimeinr (the {config.method} method has no weights)."
        )
    for shape in shapes:
        if (shape[1] > 1) != (source.shape[1] > 1):
            raise SpatimeINRError(
                f"--init-from {source.path.name}: that model was trained on {_dims(source.shape)} "
                f"data, the new input is {_dims(shape)}: warm-start from a model of the same kind "
                "of stack."
            )
    params = resolve_params(config)
    weights = checkpoint.load_weights(source, "cpu")
    if engine_of(config) == "fast":
        net: torch.nn.Module = make_refiner(params, tuple(shapes[0]))
    else:
        from ..engines.paper.network import SpatimeINRNet

        net = SpatimeINRNet(params)
    try:
        net.load_state_dict(weights)
    except RuntimeError:
        src = resolve_params(source.config)
        raise SpatimeINRError(
            f"--init-from {source.path.name}: its weights do not fit this training (preset "
            f"{source.config.preset}, refiner width {src.refine_width} depth {src.refine_depth}; "
            f"now preset {config.preset}, width {params.refine_width} depth {params.refine_depth}): "
            "train with the same preset and engine parameters, or without --init-from."
        ) from None


def check_same_input(md: ModelDir, source: Any) -> None:
    """Refuse, in one line naming both, to resume ``md`` with other data than it was trained on.

    A path is compared by content (the SHA-256 recorded in ``meta.json``), a :class:`Stack4D` by
    its source's SHA-256 when it has one, else by shape; ``None`` checks nothing.
    """
    if source is None:
        return
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    records = md.meta.get("stacks") or [md.meta]
    trained = ", ".join(Path(r.get("source_path") or r.get("name", "?")).name for r in records)
    if len(sources) != len(records):
        raise SpatimeINRError(
            f"--resume: {md.path} was trained on {len(records)} stack(s) ({trained}), not on "
            f"{len(sources)}: resume with the same inputs, or train into a new model directory."
        )
    for src, rec in zip(sources, records, strict=True):
        want = rec.get("source_sha256", "")
        was = Path(rec.get("source_path") or rec.get("name", "?")).name
        if isinstance(src, Stack4D):
            name, got = src.source_path or src.name, src.source_sha256
            same = got == want if (got and want) else list(src.shape) == list(rec.get("shape", []))
        else:
            path = Path(src)
            if not path.exists():
                raise SpatimeINRError(f"--resume: the input {path} does not exist.")
            name = str(path)
            same = not want or sha256_file(path) == want
        if not same:
            raise SpatimeINRError(
                f"--resume: {md.path} was trained on {was}, not on {name} (other data): resume "
                f"with {was}, or train {Path(name).name} into a new model directory."
            )
