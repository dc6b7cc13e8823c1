"""``spatimeinr evaluate``: the hold-out check of DESIGN.md against interpolation baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import SpatimeINRError
from .console import _bar, _graceful_stop, _say, _stage


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..core.progress import Progress
    from ..workflows.evaluate.protocol import run_evaluation
    from ..workflows.evaluate.report import format_table, write_report

    read_options = {
        "axes": args.axes,
        "channel": args.channel,
        "voxel_size": tuple(args.voxel_size) if args.voxel_size else None,
        "frame_interval": args.frame_interval,
    }
    from .. import api

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
        from ..core.resources import check_writable

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
    stack = api.read(args.input, **read_options, all_channels=True)
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
    if getattr(result, "channels", None):
        for ch in result.channels:
            print(f"channel {ch.report['channel']}:")
            print(format_table(ch.report))
    else:
        print(format_table(report))
    return 0
