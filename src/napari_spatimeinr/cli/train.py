"""``spatimeinr train``: the configuration from the command line, then the training workflow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.config import CLASSICAL_METHODS, TrainConfig, load_yaml
from ..core.errors import SpatimeINRError
from ..core.text import fmt_bytes, fmt_seconds
from .console import _bar, _graceful_stop, _say


def set_config_value(values: dict[str, Any], item: str) -> None:
    """Apply one ``--set KEY=VALUE`` to a config mapping (``params.lr=1e-3`` sets a nested field).

    The value stays text: the config's validation parses it by the field's type (numbers,
    true/false), as for the other flags.
    """
    from pydantic import BaseModel

    key, sep, value = item.partition("=")
    names = key.strip().split(".")
    if not sep or not all(names):
        raise SpatimeINRError(f"--set {item!r}: write KEY=VALUE, e.g. --set params.lr=0.001.")
    model: Any = TrainConfig
    target = values
    for i, name in enumerate(names):
        if name not in model.model_fields:
            where = ".".join(names[:i]) or "the training configuration"
            known = ", ".join(model.model_fields)
            raise SpatimeINRError(
                f"--set {item!r}: {where} has no field {name!r} (fields: {known})."
            )
        if i == len(names) - 1:
            target[name] = value.strip()
            break
        ann = model.model_fields[name].annotation
        model = next(
            (
                a
                for a in getattr(ann, "__args__", (ann,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if model is None:
            raise SpatimeINRError(f"--set {item!r}: {name!r} has no fields below it.")
        sub = target.get(name)
        if not isinstance(sub, dict):  # unset (or null in --config): start an empty mapping
            sub = target[name] = {}
        target = sub


def train_config_of(args: argparse.Namespace) -> TrainConfig:
    """The training configuration of ``spatimeinr train`` arguments: ``--config``, then each
    ``--set``, then the flags, each overriding the one before."""
    from .. import api

    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    for item in args.set or ():
        set_config_value(values, item)
    for key in ("method", "preset", "steps", "time_limit", "device", "seed"):
        v = getattr(args, key)
        if v is not None:
            values[key] = v
    return api.train_config(values)


def cmd_train(args: argparse.Namespace) -> int:
    from .. import api

    cfg = train_config_of(args)
    read_options = {
        "axes": args.axes,
        "channel": args.channel,
        "voxel_size": tuple(args.voxel_size) if args.voxel_size else None,
        "frame_interval": args.frame_interval,
    }
    if cfg.device in ("cuda", "mps"):  # refuse a missing GPU before reading anything
        from ..core.device import resolve_device

        resolve_device(cfg.device)
    if not args.resume:  # refuse before reading a possibly large input
        from ..core.resources import check_writable
        from ..store.model_dir import check_new_output

        check_new_output(Path(args.output), args.overwrite)
        check_writable(args.output, "model directory")
    if args.init_from and args.resume:
        raise SpatimeINRError(
            "--init-from starts a new training; --resume continues one: give only one of them."
        )
    if args.init_from:  # refuse a missing or untrained source model before reading anything
        from ..store.records import init_from_record

        init_from_record(args.init_from)
    if args.resume:
        source: Any = args.input[0]
        from ..workflows.train import check_same_input

        # refuse a missing or incomplete model, or other data, before saying more
        check_same_input(api.open_model(args.output), args.input)
        _say(args, f"Resuming training in {args.output}")
    else:
        from ..render.apply import expand_inputs

        paths = expand_inputs(args.input)
        # memory-mapped where the file allows: training copies it into the model a block at a time
        stacks = [api.read(p, **read_options, mapped=True, all_channels=True) for p in paths]
        source = stacks if len(stacks) > 1 else stacks[0]
        from ..data.stack import ChannelStack
        from ..workflows.train import check_channels

        check_channels(stacks, cfg, args.init_from, args.motion_channel)
        if isinstance(source, ChannelStack):
            how = (
                "the mean of the normalized channels"
                if args.motion_channel is None
                else f"channel {args.motion_channel}"
            )
            _say(
                args,
                f"{source.n} channels ({', '.join(source.names)}): one model for all of them, one "
                f"motion estimated from {how}; --channel N trains one channel alone",
            )
        for other in stacks[1:]:
            t, z, y, x = other.shape
            _say(
                args,
                f"Also input {other.name}: T={t} Z={z} Y={y} X={x}, voxel {other.voxel_size} µm, "
                f"frame interval {other.frame_interval:g} s",
            )
        if args.init_from:
            _say(args, f"Starting from the weights of {args.init_from}")
        t, z, y, x = stacks[0].shape
        budget = []
        if cfg.steps:
            budget.append(f"{cfg.steps} steps")
        if cfg.time_limit:
            budget.append(f"at most {fmt_seconds(cfg.time_limit)}")
        what = cfg.method if cfg.method in CLASSICAL_METHODS else f"spatimeinr ({cfg.preset})"
        if cfg.method == "spatimeinr":
            from ..engines.zdecoder.train import split_text

            split = split_text(cfg, stacks[0].shape)
            if split:
                budget.append(split)
        _say(
            args,
            f"Input {stacks[0].name}: T={t} Z={z} Y={y} X={x}, voxel {stacks[0].voxel_size} µm, "
            f"frame interval {stacks[0].frame_interval:g} s. Method {what}"
            + (f", {', '.join(budget)}" if budget else "")
            + f". Model → {args.output}",
        )
        for stack in stacks:  # what the reader assumed or left out (e.g. a file's other scenes)
            for note in stack.extra.get("notes", []):
                _say(args, f"Note ({stack.name}): {note}")
        from ..engines.presets import engine_of
        from ..limits import TrainCost

        if cfg.method == "spatimeinr" and engine_of(cfg) == "fast":
            from ..engines.fast.task import flow_plan

            _say(args, "Plan: " + flow_plan(stacks[0].shape, cfg.time_limit))
        from ..data.stack import ChannelStack

        first = stacks[0].channels[0] if isinstance(stacks[0], ChannelStack) else stacks[0]
        cost = TrainCost(  # what it will cost: the gate's own figures (one channel's)
            first.shape,
            engine_of(cfg),
            str(first.extra.get("source_dtype") or "float32"),
            mapped=type(first.data).__name__ == "memmap",
        )
        _say(
            args,
            f"Model directory about {fmt_bytes(cost.disk_bytes)}; peak memory about "
            f"{fmt_bytes(cost.peak_bytes)}",
        )
    with _graceful_stop() as stop:
        gen = api.train(
            source,
            args.output,
            cfg,
            overwrite=args.overwrite,
            resume=args.resume,
            stop=stop,
            force=args.force,
            init_from=args.init_from,
            motion_channel=getattr(args, "motion_channel", None),
        )
        # the training copies the input into the model directory and reads it from there: the
        # stacks read here are not kept (their memory would count for the whole training)
        source = stacks = stack = other = first = None  # noqa: F841
        bar = None
        last = None
        for p in gen:
            last = p
            if bar is None:
                bar = _bar(args, p.total, "train", "step")
            if p.total and bar.total != p.total:
                bar.total = p.total
            bar.n = p.step
            post = {}
            if p.loss is not None:
                post["loss"] = f"{p.loss:.4g}"
            if p.psnr is not None:
                post["psnr"] = f"{p.psnr:.2f} dB"
            if post:
                bar.set_postfix(post, refresh=False)
            bar.refresh()
        if bar is not None:
            bar.close()
    msg = f"Model written to {args.output}"
    if last is not None and last.step:
        msg += f" ({last.step} steps, {fmt_seconds(last.seconds)})"
    _say(args, msg)
    return 0
