"""``spatimeinr demo``: the synthetic sample trained and rendered, headless."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import SpatimeINRError
from .console import _say
from .parser import build_parser
from .render import cmd_render
from .train import cmd_train


def cmd_demo(args: argparse.Namespace) -> int:
    """The headless tour: write the synthetic sample, train on it, render it x2 in T and Z."""
    import dask.array as da

    from .. import api
    from ..core.resources import check_writable
    from ..data.synthetic import make_nuclei_timelapse
    from ..io.meta import OutputMeta

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
