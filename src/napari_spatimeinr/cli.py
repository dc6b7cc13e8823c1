"""Command line: ``spatimeinr train | render | evaluate | motion | info`` (DESIGN.md, "CLI contract").

Errors print one line to stderr and exit with status 2 (usage errors too); progress goes to stderr;
results to files. Limits before work (DESIGN.md, "CLI contract"): every command runs the gate of
:mod:`napari_spatimeinr.limits` from shapes alone before it allocates or writes anything (writable
target, format and free disk, plan, peak memory); ``--force`` skips the free-disk check only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .core.config import CLASSICAL_METHODS, TrainConfig, load_yaml
from .core.errors import SpatimeINRError, StopRequested


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _fmt_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def _bar(args: argparse.Namespace, total: int | None, desc: str, unit: str = "it"):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=getattr(args, "quiet", False),
        dynamic_ncols=True,
        leave=True,
    )


@contextmanager
def _graceful_stop():
    """First Ctrl-C asks long work to stop at the next step (keeping a usable result)."""
    state = {"stop": False}

    def handler(signum, frame):  # noqa: ARG001
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        print("\nStopping after the current step (Ctrl-C again to abort)…", file=sys.stderr)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread
        old = None
    try:
        yield lambda: state["stop"]
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


# -- train -------------------------------------------------------------------------------------
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
    from . import api

    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    for item in args.set or ():
        set_config_value(values, item)
    for key in ("method", "preset", "steps", "time_limit", "device", "seed"):
        v = getattr(args, key)
        if v is not None:
            values[key] = v
    return api.train_config(values)


def cmd_train(args: argparse.Namespace) -> int:
    from . import api

    cfg = train_config_of(args)
    read_options = {
        "axes": args.axes,
        "channel": args.channel,
        "voxel_size": tuple(args.voxel_size) if args.voxel_size else None,
        "frame_interval": args.frame_interval,
    }
    if cfg.device == "cuda":  # refuse a missing GPU before reading anything
        from .core.device import resolve_device

        resolve_device("cuda")
    if not args.resume:  # refuse before reading a possibly large input
        from .core.resources import check_writable
        from .store.model_dir import check_new_output

        check_new_output(Path(args.output), args.overwrite)
        check_writable(args.output, "model directory")
    if args.init_from and args.resume:
        raise SpatimeINRError(
            "--init-from starts a new training; --resume continues one: give only one of them."
        )
    if args.init_from:  # refuse a missing or untrained source model before reading anything
        from .store.records import init_from_record

        init_from_record(args.init_from)
    if args.resume:
        source: Any = args.input[0]
        from .workflows.train import check_same_input

        # refuse a missing or incomplete model, or other data, before saying more
        check_same_input(api.open_model(args.output), args.input)
        _say(args, f"Resuming training in {args.output}")
    else:
        from .render.apply import expand_inputs

        paths = expand_inputs(args.input)
        stacks = [api.read(p, **read_options) for p in paths]
        source = stacks if len(stacks) > 1 else stacks[0]
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
            budget.append(f"at most {_fmt_seconds(cfg.time_limit)}")
        what = cfg.method if cfg.method in CLASSICAL_METHODS else f"spatimeinr ({cfg.preset})"
        if cfg.method == "spatimeinr":
            from .engines.zdecoder.train import split_text

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
        if cfg.method == "spatimeinr":
            from .engines.presets import engine_of

            if engine_of(cfg) == "fast":
                from .engines.fast.task import flow_plan

                _say(args, "Plan: " + flow_plan(stacks[0].shape, cfg.time_limit))
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
        )
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
        msg += f" ({last.step} steps, {_fmt_seconds(last.seconds)})"
    _say(args, msg)
    return 0


# -- render ------------------------------------------------------------------------------------
@contextmanager
def _dask_client(args: argparse.Namespace):
    if args.scheduler or args.workers:
        from .core.cluster import cluster_summary, dask_client

        with dask_client(
            scheduler=args.scheduler,
            workers=args.workers,
            model_dir=args.model_dir,
            output=args.output,
        ) as client:
            _say(args, f"Rendering on dask cluster {cluster_summary(client)}")
            yield client
    else:
        yield None


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "axes": args.axes,
        "channel": args.channel,
        "voxel_size": tuple(args.voxel_size) if args.voxel_size else None,
        "frame_interval": args.frame_interval,
    }


def _scales(args: argparse.Namespace) -> tuple[float, float, float]:
    s = args.scale
    return (
        args.scale_z if args.scale_z is not None else s,
        args.scale_y if args.scale_y is not None else s,
        args.scale_x if args.scale_x is not None else s,
    )


def _check_output(out: Path, overwrite: bool) -> None:
    from .core.resources import check_writable
    from .io.formats import write_family
    from .io.write import check_target

    if out.exists() and not overwrite:
        raise SpatimeINRError(
            f"{out} already exists: choose another name, or pass --overwrite to replace it."
        )
    write_family(out)  # an unknown suffix is refused before the model is opened
    check_target(out, overwrite)
    check_writable(out)


def _plan(args: argparse.Namespace, md, out: Path, unc_out: Path | None = None):
    """The plan of one render after the gate of :mod:`.limits` (cost, disk, memory); with
    ``unc_out``, the uncertainty map's file passes the same gate."""
    from . import api
    from .limits import check_render_export

    t_range = tuple(args.t_range) if args.t_range else None
    roi = tuple(args.roi) if args.roi else None
    if unc_out is not None:
        from .render.lazy import check_uncertainty

        check_uncertainty(md)
    cost = check_render_export(
        md.shape,
        md.path,
        [out] if unc_out is None else [out, unc_out],
        args.dtype,
        scale_t=args.scale_t,
        scale_zyx=_scales(args),
        t_range=t_range,  # type: ignore[arg-type]
        roi=roi,  # type: ignore[arg-type]
        chunk_mb=args.chunk_mb,
        workers=args.workers or None,
        force=args.force,
    )
    plan = api.plan_render(
        md,
        args.scale_t,
        _scales(args),
        t_range,  # type: ignore[arg-type]
        roi,  # type: ignore[arg-type]
        chunk_mb=args.chunk_mb,
        device=args.device,
        keep_measured=args.keep_measured,
    )
    return plan, cost, (md.path / "input.npy").stat().st_size


def _apply(args: argparse.Namespace, path: Path, progress=None):
    """The model applied to the stack at ``path`` (``--input``): (applied ModelDir, warnings)."""
    from . import api
    from .core.device import resolve_device
    from .render.apply import apply_model

    stack = api.read(path, **_read_options(args))
    device = resolve_device(args.device)
    applied = apply_model(args.model_dir, stack, args.cache_dir, device=device, progress=progress)
    return applied.model_dir, applied.warnings


def _batch(args: argparse.Namespace) -> bool:
    """True when ``--input`` asks for several stacks (a glob, a folder, several files)."""
    from .render.apply import GLOB_CHARS

    given = args.input or []
    if len(given) > 1 or str(args.output).endswith(("/", "\\")):
        return True
    return any(
        any(c in g for c in GLOB_CHARS)
        or (Path(g).is_dir() and not g.rstrip("/").endswith(".zarr"))
        for g in given
    )


def cmd_render(args: argparse.Namespace) -> int:
    """Render a model into a file. The gate of :mod:`.limits` runs first, from the shape alone:
    writable target, format and disk (``--force`` skips the disk check), plan, peak memory.

    ``--input``: apply the model to another stack (one file), or to several into ``-o DIR``."""
    from . import api

    if args.workers is not None and args.workers < 1:
        raise SpatimeINRError(f"--workers must be at least 1, got {args.workers}.")
    if args.input and _batch(args):
        if args.uncertainty:
            raise SpatimeINRError(
                "--uncertainty writes one file: render the stacks one at a time (one --input "
                "and one -o FILE each) to get their uncertainty maps."
            )
        return _render_batch(args)
    out = Path(args.output)
    _check_output(out, args.overwrite)
    unc_out = Path(args.uncertainty) if args.uncertainty else None
    if unc_out is not None:
        if unc_out.resolve() == out.resolve():
            raise SpatimeINRError(
                f"--uncertainty {unc_out} is the render's own output: choose another file name."
            )
        _check_output(unc_out, args.overwrite)
    md = api.open_model(args.model_dir)
    if args.input:
        from .render.apply import expand_inputs

        (path,) = expand_inputs(args.input)
        _say(args, f"Applying {md.path.name} to {path.name} (its normalization and motion)")
        md, warns = _apply(args, path, progress=lambda message: _say(args, message))
        for w in warns:
            _say(args, f"Warning: {w}")
    plan, cost, model_bytes = _plan(args, md, out, unc_out)
    disk = cost.disk_bytes(args.dtype, str(out))
    with _dask_client(args):
        est = api.estimate_seconds(plan) if not (args.scheduler or args.workers) else None
        t, z, y, x = plan.shape
        _say(
            args,
            f"Output T={t} Z={z} Y={y} X={x} ({args.dtype}), about {_fmt_bytes(disk)} on disk; "
            f"chunks of {_fmt_bytes(cost.chunk_bytes)}, peak memory about "
            f"{_fmt_bytes(cost.peak_bytes(model_bytes))}; estimated time "
            f"{_fmt_seconds(est) if est is not None else 'unknown (cluster)'}",
        )
        for arr, target, meta, label in api.render_outputs(plan, out, unc_out):
            bar = _bar(args, None, label, "slab")

            def progress(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            with _graceful_stop() as stop:
                t1 = time.perf_counter()
                try:
                    api.export(
                        arr,
                        target,
                        meta,
                        args.dtype,
                        overwrite=args.overwrite,
                        progress=progress,
                        cancel=stop,
                        force=args.force,
                    )
                except StopRequested:
                    bar.close()
                    done = "" if target == out else f" ({out} was written)"
                    raise SpatimeINRError(
                        f"Render cancelled: {target} was not written{done}."
                    ) from None
                bar.close()
            dt = time.perf_counter() - t1
            n = t * z * y * x
            _say(args, f"Wrote {target} in {_fmt_seconds(dt)} ({n / max(dt, 1e-9):.3g} voxels/s)")
    return 0


def batch_output(folder: Path, path: Path) -> Path:
    """Where a batch render writes the render of ``path``: same name and format in ``folder``
    (``.ome.tif`` for inputs of a format that is not written, e.g. ``.npy``)."""
    from .io.formats import SUPPORTED_WRITE_SUFFIXES, stem_of, suffix_of

    suffix = suffix_of(path)
    if suffix not in SUPPORTED_WRITE_SUFFIXES:
        suffix = ".ome.tif"
    return folder / f"{stem_of(path)}{suffix}"


def _render_batch(args: argparse.Namespace) -> int:
    """``render MODEL --input 'GLOB' -o DIR/``: every stack into DIR, one progress bar, one result
    line per stack (stdout); a failing stack is reported and the others go on; exit status 2 when
    any failed."""
    from tqdm import tqdm

    from . import api
    from .core.resources import check_writable
    from .render.apply import expand_inputs

    inputs = expand_inputs(args.input)  # a glob that matches nothing: one message
    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise SpatimeINRError(
            f"{folder} is a file: several inputs render into a folder, give -o FOLDER/."
        )
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        if present and not args.overwrite:
            raise SpatimeINRError(
                f"The output folder {folder} already holds {len(present)} file(s) (e.g. "
                f"{present[0]}): choose a new or empty folder, or pass --overwrite (renders of the "
                "same name are replaced)."
            )
    else:
        check_writable(folder, "output folder")
    md = api.open_model(args.model_dir)  # a missing model: one message, before any work
    targets = [batch_output(folder, p) for p in inputs]
    names = [t.name for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpatimeINRError(
            f"Several inputs would write {dup[0]} in {folder}: rename them or render them apart."
        )
    folder.mkdir(parents=True, exist_ok=True)
    n = len(inputs)
    _say(args, f"Rendering {md.path.name} on {n} stack(s) into {folder}")
    bar = tqdm(
        total=n,
        desc="render",
        unit="stack",
        file=sys.stderr,
        disable=getattr(args, "quiet", False),
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
    )
    failed: list[str] = []
    with _dask_client(args), _graceful_stop() as stop:
        for i, (path, out) in enumerate(zip(inputs, targets, strict=True)):
            if stop():
                break
            bar.set_description(f"render {i + 1}/{n} {path.name}", refresh=True)

            def chunk(done: int, total: int, i: int = i) -> None:
                bar.n = i + done / max(total, 1)
                bar.refresh()

            t0 = time.perf_counter()
            try:
                _check_output(out, args.overwrite)
                amd, warns = _apply(args, path)
                plan, _, _ = _plan(args, amd, out)
                api.export(
                    api.render_plan(plan),
                    out,
                    plan.meta,
                    args.dtype,
                    overwrite=args.overwrite,
                    progress=chunk,
                    cancel=stop,
                    force=args.force,
                )
            except StopRequested:
                failed.append(path.name)
                tqdm.write(f"CANCELLED {path} (no output written)", file=sys.stdout)
                break
            except SpatimeINRError as err:
                failed.append(path.name)
                tqdm.write(f"FAILED {path}: {err}", file=sys.stdout)
            except Exception as err:  # one stack's unexpected failure does not stop the batch
                if args.debug:
                    raise
                failed.append(path.name)
                tqdm.write(f"FAILED {path}: {type(err).__name__}: {err}", file=sys.stdout)
            else:
                t, z, y, x = plan.shape
                note = f"; {len(warns)} warning(s): {' '.join(warns)}" if warns else ""
                tqdm.write(
                    f"OK {path} -> {out} (T={t} Z={z} Y={y} X={x}, "
                    f"{_fmt_seconds(time.perf_counter() - t0)}){note}",
                    file=sys.stdout,
                )
            bar.n = i + 1
            bar.refresh()
    bar.close()
    done = n - len(failed)
    if failed:
        raise SpatimeINRError(
            f"{len(failed)} of {n} stack(s) failed ({', '.join(failed)}); {done} written to "
            f"{folder}."
        )
    _say(args, f"Rendered {done} stack(s) into {folder}")
    return 0


# -- evaluate ----------------------------------------------------------------------------------
def _stage(message: str) -> str:
    """The stage of an evaluation progress message: its first word (baseline, motion, train, ...)."""
    words = message.replace(":", " ").split()
    return words[0] if words else ""


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.progress import Progress
    from .workflows.evaluate.protocol import run_evaluation
    from .workflows.evaluate.report import format_table, write_report

    read_options = {
        "axes": args.axes,
        "channel": args.channel,
        "voxel_size": tuple(args.voxel_size) if args.voxel_size else None,
        "frame_interval": args.frame_interval,
    }
    from . import api

    # the evaluated method's training settings, checked before any work
    api.train_config(
        {
            k: v
            for k, v in {
                "method": args.method,
                "preset": args.preset,
                "time_limit": args.time_limit,
                "steps": args.steps,
                "seed": args.seed,
            }.items()
            if v is not None
        }
    )
    if args.output:  # refuse a report that cannot be written before any work
        from .core.resources import check_writable

        report_path = Path(args.output)
        if report_path.suffix and report_path.suffix.lower() != ".json":
            raise SpatimeINRError(
                f"{report_path.name}: the report is JSON (a .csv and a .png are written beside "
                "it): end the name with .json."
            )
        if not report_path.parent.is_dir():
            raise SpatimeINRError(
                f"The folder {report_path.parent} does not exist: create it or choose another -o."
            )
        if report_path.exists() and not args.overwrite:
            raise SpatimeINRError(
                f"{report_path} already exists: choose another name, or pass --overwrite."
            )
        check_writable(report_path, "report")
    stack = api.read(args.input, **read_options)
    result = None
    with _graceful_stop() as stop:
        bar, bar_stage = None, ""
        for item in run_evaluation(
            stack,
            task=args.task,
            factor=args.factor,
            z_only=args.z_only,
            method=args.method,
            preset=args.preset,
            time_limit=args.time_limit,
            steps=args.steps,
            seed=args.seed,
            stop=stop,
            force=args.force,
        ):
            if isinstance(item, Progress):
                stage = _stage(item.message)
                if bar is not None and stage != bar_stage:  # one bar per stage, not one restarting
                    bar.close()
                    bar = None
                if bar is None:
                    bar, bar_stage = _bar(args, item.total, stage or "evaluate", "step"), stage
                if item.total and bar.total != item.total:
                    bar.total = item.total
                bar.n = item.step
                if item.message:
                    bar.set_description(item.message[:40], refresh=False)
                bar.refresh()
            else:
                result = item
        if bar is not None:
            bar.close()
    if result is None:
        raise SpatimeINRError("Evaluation stopped before it produced a result.")
    report = result.report if hasattr(result, "report") else result
    if args.output:
        write_report(report, args.output)
        _say(args, f"Report written to {args.output} (+ .csv, .png)")
    print(format_table(report))
    return 0


# -- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """The headless tour: write the synthetic sample, train on it, render it x2 in T and Z."""
    import dask.array as da

    from . import api
    from .core.resources import check_writable
    from .data.synthetic import make_nuclei_timelapse
    from .io.meta import OutputMeta

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise SpatimeINRError(f"{out} is a file: choose a folder for the demo files.")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SpatimeINRError(f"{out} is not empty: choose another folder or pass --overwrite.")
    if not out.exists():
        check_writable(out, "demo folder")
    out.mkdir(exist_ok=True)
    stack = make_nuclei_timelapse(seed=args.seed)
    sample = out / "sample.tif"
    meta = OutputMeta(
        voxel_size=stack.voxel_size,
        frame_interval=stack.frame_interval,
        name="sample",
        provenance={"software": "napari-spatimeinr", "what": "synthetic nuclei time-lapse"},
        intensity_range=(float(stack.data.min()), float(stack.data.max())),
    )
    api.export(da.from_array(stack.data), sample, meta, overwrite=True)
    _say(args, f"Wrote the synthetic sample {sample} (T,Z,Y,X = {stack.shape})")
    argv = [
        "train",
        str(sample),
        "-o",
        str(out / "sample.spatimeinr"),
        "--overwrite",
        "--method",
        args.method,
        "--time-limit",
        str(args.time_limit),
    ]
    if args.quiet:
        argv.append("--quiet")
    cmd_train(build_parser().parse_args(argv))
    argv = [
        "render",
        str(out / "sample.spatimeinr"),
        "-o",
        str(out / "sample_x2.ome.tif"),
        "--scale-t",
        "2",
        "--scale-z",
        "2",
        "--overwrite",
    ]
    if args.quiet:
        argv.append("--quiet")
    cmd_render(build_parser().parse_args(argv))
    _say(args, f"Done: open {out / 'sample_x2.ome.tif'} beside {sample} (e.g. in napari or Fiji).")
    return 0


# -- motion ------------------------------------------------------------------------------------
def cmd_motion(args: argparse.Namespace) -> int:
    """Export the velocity field of a motion model (TCZYX, µm/s). The checks run before any work:
    a model without motion, the suffix, an existing output, the folder, the free disk."""
    from . import api
    from .core.resources import check_writable
    from .engines.fast.velocity import VelocityField
    from .io.write import check_target
    from .io.write_velocity import velocity_bytes, velocity_family

    out = Path(args.output)
    velocity_family(out)  # an unknown suffix is refused before the model is opened
    check_target(out, args.overwrite)
    check_writable(out, "motion file")
    field = VelocityField(api.open_model(args.model_dir), args.device)
    t, c, z, y, x = field.shape
    solve = (
        f"; {field.n_unsolved} of {t} flows were not stored and are solved now"
        if field.n_unsolved
        else ""
    )
    _say(
        args,
        f"Motion T={t} intervals C={c} (vz, vy, vx in µm/s) Z={z} Y={y} X={x} float32, about "
        f"{_fmt_bytes(velocity_bytes(field.shape))} on disk; peak memory about "
        f"{_fmt_bytes(field.peak_bytes)}; estimated time {_fmt_seconds(field.estimate_seconds())}"
        f"{solve}",
    )
    bar = _bar(args, t, "motion", "interval")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    t0 = time.perf_counter()
    with _graceful_stop() as stop:
        try:
            api.export_motion(
                field,
                out,
                overwrite=args.overwrite,
                progress=progress,
                cancel=stop,
                device=args.device,
                force=args.force,
            )
        except StopRequested:
            bar.close()
            raise SpatimeINRError("Motion export cancelled: no output was written.") from None
    bar.close()
    _say(args, f"Wrote {out} in {_fmt_seconds(time.perf_counter() - t0)}")
    return 0


# -- info --------------------------------------------------------------------------------------
def _uncertainty_summary(md: Any) -> str:
    """One line on the model's uncertainty map for ``spatimeinr info``."""
    from .engines.fast import uncertainty
    from .render.lazy import check_uncertainty

    try:
        check_uncertainty(md)
    except SpatimeINRError:
        return "none (fast engine, 3 frames or more)"
    cal = uncertainty.load(md.path / uncertainty.UNCERTAINTY_FILE)
    if cal is None:
        return "not calibrated yet (fitted when first rendered, a few seconds)"
    f = cal.fit
    return (
        f"calibrated on {f.get('frames')} held-out frames: Spearman {f.get('spearman', 0):.2f} "
        f"with |error|, top decile {f.get('top_decile_ratio', 0):.1f}x the mean"
    )


def cmd_info(args: argparse.Namespace) -> int:
    from .engines.zdecoder import summary as spatial_summary
    from .store.model_dir import ModelDir

    md = ModelDir(args.model_dir)
    m = md.meta
    hist = md.read_history()
    info = {
        "path": str(md.path),
        "method": md.config.method,
        "preset": md.config.preset if md.config.method == "spatimeinr" else None,
        "source": m.get("source_path") or m.get("name"),
        "source_sha256": m.get("source_sha256"),
        "shape_tzyx": m["shape"],
        "voxel_size_zyx_um": m["voxel_size"],
        "frame_interval_s": m["frame_interval"],
        "normalization": m["normalization"],
        "train_steps": m.get("train_steps", 0),
        "train_seconds": m.get("train_seconds", 0.0),
        "last_history": hist[-1] if hist else None,
        "spatial": spatial_summary(m.get("spatial"))
        if md.config.method == "spatimeinr" and m["shape"][1] > 1
        else None,
        "uncertainty": _uncertainty_summary(md),
        "software_version": m.get("software_version"),
    }
    if m.get("init_from"):  # a warm start
        info["init_from"] = m["init_from"].get("model_dir")
    if m.get("stacks"):  # trained on several stacks
        info["stacks"] = [f"{s['name']} {tuple(s['shape'])}" for s in m["stacks"]]
    if m.get("applied"):  # an applied model directory (render --input)
        info["applied_from"] = m["applied"].get("model_dir")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {v}")
    return 0


# -- parser ------------------------------------------------------------------------------------
def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--axes", help=StackOptionsHelp.axes)
    p.add_argument("--channel", type=int, help="channel index when the file has a channel axis")
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="voxel size in µm (overrides the file)",
    )
    p.add_argument(
        "--frame-interval",
        type=float,
        metavar="S",
        help="seconds between frames (overrides the file)",
    )


FORCE_HELP = (
    "go on even if the free disk space looks too small (memory and format limits still apply)"
)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line on stderr (exit status 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class StackOptionsHelp:
    axes = "axis order of the file, e.g. TZYX, ZYX, TYX, TCZYX (default: from the file)"


def build_parser() -> argparse.ArgumentParser:
    fields = TrainConfig.model_fields
    p = OneLineParser(
        prog="spatimeinr",
        description="Continuous 4D super-resolution of fluorescence time-lapses (SpatimeINR).",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)

    t = sub.add_parser("train", help="build a model of a stack")
    t.add_argument(
        "input",
        nargs="+",
        help="stack: .tif/.ome.tif/.nii(.gz)/.zarr/.npy; several (files, a folder or a quoted "
        "glob) train one model on all of them",
    )
    t.add_argument("-o", "--output", required=True, help="model directory to write")
    t.add_argument(
        "--method", choices=["spatimeinr", *CLASSICAL_METHODS], help=fields["method"].description
    )
    t.add_argument("--preset", choices=["fast", "paper"], help=fields["preset"].description)
    _add_read_options(t)
    t.add_argument("--steps", type=int, help=fields["steps"].description)
    t.add_argument(
        "--time-limit", type=float, metavar="SECONDS", help=fields["time_limit"].description
    )
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help=fields["device"].description)
    t.add_argument("--seed", type=int, help=fields["seed"].description)
    t.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="training configuration file (flags override its values)",
    )
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any configuration field, e.g. --set checkpoint_every=30 --set params.lr=0.001 "
        "(repeatable; overrides --config, the flags above override it)",
    )
    t.add_argument("--resume", action="store_true", help="continue the training in MODEL_DIR")
    t.add_argument(
        "--init-from",
        metavar="MODEL_DIR",
        help="start from the weights of this trained model (a warm start; same kind of stack)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    t.add_argument("--force", action="store_true", help=FORCE_HELP)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("render", help="render a model at any scale into a file")
    r.add_argument("model_dir")
    r.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file: .tif (ImageJ), .ome.tif, .nii/.nii.gz or .zarr (OME-Zarr)",
    )
    r.add_argument("--scale", type=float, default=1.0, help="spatial factor for z, y and x")
    r.add_argument("--scale-z", type=float, help="spatial factor along z (overrides --scale)")
    r.add_argument("--scale-y", type=float, help="spatial factor along y (overrides --scale)")
    r.add_argument("--scale-x", type=float, help="spatial factor along x (overrides --scale)")
    r.add_argument(
        "--scale-t",
        type=float,
        default=1.0,
        help="temporal factor k: (T-1)*k+1 frames from the first to the last",
    )
    r.add_argument(
        "--dtype",
        choices=["float32", "uint16"],
        default="float32",
        help="output type (uint16 maps the input's intensity range back)",
    )
    r.add_argument(
        "--keep-measured",
        action="store_true",
        help="measured frames as acquired (default: every frame from the model, one noise level)",
    )
    r.add_argument(
        "--uncertainty",
        metavar="FILE",
        help="also write the render's uncertainty map (expected absolute error per voxel, in the "
        "output's intensity units) to FILE: same grid, axes and metadata (fast engine only)",
    )
    r.add_argument(
        "--t-range",
        type=float,
        nargs=2,
        metavar=("A", "B"),
        help="only frames with instants in [A, B] (input frame indices)",
    )
    r.add_argument(
        "--roi",
        type=int,
        nargs=6,
        metavar=("Z0", "Z1", "Y0", "Y1", "X0", "X1"),
        help="only input voxels Z0:Z1, Y0:Y1, X0:X1 (half-open)",
    )
    r.add_argument(
        "--input",
        nargs="+",
        metavar="STACK",
        help="apply the model to this stack instead of its own; a quoted glob, a folder or "
        "several files render each into the folder -o DIR/",
    )
    _add_read_options(r)
    r.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the normalization and flows of --input stacks are kept (default: "
        "$SPATIMEINR_CACHE_DIR or ~/.cache/napari-spatimeinr/applied)",
    )
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    r.add_argument("--chunk-mb", type=float, default=8.0, help="target chunk size in MB")
    g = r.add_mutually_exclusive_group()
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="render on an existing dask.distributed scheduler (tcp://HOST:PORT, or the JSON "
        "file of `dask scheduler --scheduler-file`)",
    )
    g.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="render on a local dask cluster of N worker processes",
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing output")
    r.add_argument("--force", action="store_true", help=FORCE_HELP)
    r.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=cmd_render)

    e = sub.add_parser("evaluate", help="hold-out check against interpolation baselines")
    e.add_argument("input")
    e.add_argument("--task", choices=["temporal", "spatial"], required=True)
    e.add_argument("--factor", type=int, required=True, help="withholding factor k (>= 2)")
    e.add_argument("--z-only", action="store_true", help="spatial task along z only")
    e.add_argument("--method", choices=["spatimeinr", *CLASSICAL_METHODS], default="spatimeinr")
    e.add_argument("--preset", choices=["fast", "paper"], default="fast")
    e.add_argument("--time-limit", type=float, metavar="SECONDS")
    e.add_argument("--steps", type=int)
    e.add_argument("--seed", type=int, default=0)
    _add_read_options(e)
    e.add_argument("-o", "--output", metavar="REPORT.json", help="write the report (JSON+CSV+PNG)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing report")
    e.add_argument("--force", action="store_true", help=FORCE_HELP)
    e.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser(
        "motion",
        help="export the motion a model recovered: velocities in µm/s (TCZYX)",
        description="Write the velocity field between neighbouring frames: axes TCZYX, T = the "
        "T-1 intervals (entry t: frames t -> t+1, at frame t's voxels), C = (vz, vy, vx) in µm/s "
        "(vz = 0 for 2D+t), with the voxel size, frame interval and provenance.",
    )
    m.add_argument("model_dir")
    m.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file: .ome.tif / .tif (OME-TIFF) or .ome.zarr / .zarr (OME-Zarr)",
    )
    m.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where flows the model did not store are solved (auto: a GPU when there is one)",
    )
    m.add_argument("--overwrite", action="store_true", help="replace an existing output")
    m.add_argument("--force", action="store_true", help=FORCE_HELP)
    m.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    m.set_defaults(func=cmd_motion)

    i = sub.add_parser("info", help="describe a model directory")
    i.add_argument("model_dir")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("demo", help="train and render the synthetic sample stack (a quick tour)")
    d.add_argument("-o", "--output", default="spatimeinr-demo", help="folder for the demo files")
    d.add_argument("--method", choices=["spatimeinr", *CLASSICAL_METHODS], default="spatimeinr")
    d.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overwrite", action="store_true", help="reuse a non-empty folder")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except SpatimeINRError as err:
        print(f"spatimeinr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spatimeinr: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line, the traceback only on request
        if args.debug:
            raise
        print(
            f"spatimeinr: unexpected error: {type(err).__name__}: {err} (run with --debug for "
            "details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
