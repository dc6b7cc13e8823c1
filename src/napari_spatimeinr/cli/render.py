"""``spatimeinr render``: one model on its stack or on other stacks (``--input``), through the gate."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import SpatimeINRError, StopRequested
from ..core.text import fmt_bytes, fmt_seconds
from .console import _bar, _graceful_stop, _say


@contextmanager
def _dask_client(args: argparse.Namespace):
    if args.scheduler or args.workers:
        from ..core.cluster import cluster_summary, dask_client

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
    from ..core.resources import check_writable
    from ..io.formats import write_family
    from ..io.write import check_target

    if out.exists() and not overwrite:
        raise SpatimeINRError(
            f"{out} already exists: choose another name, or pass --overwrite to replace it."
        )
    write_family(out)  # an unknown suffix is refused before the model is opened
    check_target(out, overwrite)
    check_writable(out)


def _plan(args: argparse.Namespace, md, out: Path, unc_out: Path | None = None):
    """The plan of one render after the gate of :mod:`.limits` (cost, disk, memory); with
    ``unc_out``, the uncertainty map's file passes the same gate. A multi-channel model renders
    every channel (TCZYX) unless ``--channel N`` chose one."""
    from .. import api
    from ..limits import check_render_export, renderer_bytes
    from ..store.model_dir import n_channels

    multi = bool(md.meta.get("channel_dirs"))
    channel = args.channel if multi else None
    channels = n_channels(md) if multi and channel is None else 1
    if channel is not None:
        from ..render.lazy import select_channel

        select_channel(md, channel)  # out of range: one line, before the gate

    t_range = tuple(args.t_range) if args.t_range else None
    roi = tuple(args.roi) if args.roi else None
    if unc_out is not None:
        from ..render.lazy import check_uncertainty

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
        channels=channels,
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
        channel=channel,
    )
    return plan, cost, channels * renderer_bytes(md.shape)


def _model_channel(args: argparse.Namespace, md):
    """The model to render: ``md``, or with ``--channel N`` channel N's model of a
    multi-channel model (a single-channel model keeps ``--channel`` for reading ``--input``)."""
    from ..render.lazy import select_channel
    from ..store.model_dir import n_channels

    if n_channels(md) == 1:
        return md
    return select_channel(md, args.channel, applied=bool(args.input))


def _apply(args: argparse.Namespace, path: Path, progress=None):
    """The model applied to the stack at ``path`` (``--input``): (applied ModelDir, warnings)."""
    from .. import api
    from ..core.device import resolve_device
    from ..render.apply import apply_model

    model = _model_channel(args, api.open_model(args.model_dir))  # before reading the stack
    stack = api.read(path, **_read_options(args))
    device = resolve_device(args.device)
    applied = apply_model(model.path, stack, args.cache_dir, device=device, progress=progress)
    return applied.model_dir, applied.warnings


def _batch(args: argparse.Namespace) -> bool:
    """True when ``--input`` asks for several stacks (a glob, a folder, several files)."""
    from ..render.apply import GLOB_CHARS

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
    from .. import api

    if args.workers is not None and args.workers < 1:
        raise SpatimeINRError(f"--workers must be at least 1, got {args.workers}.")
    if args.device in ("cuda", "mps") and not (args.scheduler or args.workers):
        from ..core.device import resolve_device

        resolve_device(args.device)  # a missing GPU here is refused before any work
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
        from ..render.apply import expand_inputs

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
        chans = ""
        if plan.meta.channel_names:
            chans = f" C={plan.channels} ({', '.join(plan.meta.channel_names)})"
        _say(
            args,
            f"Output T={t}{chans} Z={z} Y={y} X={x} ({args.dtype}), about {fmt_bytes(disk)} on "
            "disk; "
            f"chunks of {fmt_bytes(cost.chunk_bytes)}, peak memory about "
            f"{fmt_bytes(cost.peak_bytes(model_bytes))}; estimated time "
            f"{fmt_seconds(est) if est is not None else 'unknown (cluster)'}",
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
            n = t * z * y * x * plan.channels
            _say(args, f"Wrote {target} in {fmt_seconds(dt)} ({n / max(dt, 1e-9):.3g} voxels/s)")
    return 0


def batch_output(folder: Path, path: Path) -> Path:
    """Where a batch render writes the render of ``path``: same name and format in ``folder``
    (``.ome.tif`` for inputs of a format that is not written, e.g. ``.npy``)."""
    from ..io.formats import SUPPORTED_WRITE_SUFFIXES, stem_of, suffix_of

    suffix = suffix_of(path)
    if suffix not in SUPPORTED_WRITE_SUFFIXES:
        suffix = ".ome.tif"
    return folder / f"{stem_of(path)}{suffix}"


def _render_batch(args: argparse.Namespace) -> int:
    """``render MODEL --input 'GLOB' -o DIR/``: every stack into DIR, one progress bar, one result
    line per stack (stdout); a failing stack is reported and the others go on; exit status 2 when
    any failed."""
    from tqdm import tqdm

    from .. import api
    from ..core.resources import check_writable
    from ..render.apply import expand_inputs

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
                    f"{fmt_seconds(time.perf_counter() - t0)}){note}",
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
