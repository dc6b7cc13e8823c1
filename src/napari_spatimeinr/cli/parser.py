"""The argument parser of every command (the CLI contract of DESIGN.md)."""

from __future__ import annotations

import argparse

from ..core.config import CLASSICAL_METHODS, TrainConfig
from ..core.device import DEVICES

CHANNEL_HELP = {
    "train": "use only this channel of a multi-channel file (default: every channel, one model)",
    "render": "render only this channel of a multi-channel model (and read this channel of an "
    "--input file); default: every channel (TCZYX output)",
    "evaluate": "evaluate only this channel of a multi-channel file (default: every channel, one "
    "model, scored per channel)",
}


def _add_read_options(p: argparse.ArgumentParser, command: str = "render") -> None:
    p.add_argument("--axes", help=StackOptionsHelp.axes)
    p.add_argument("--channel", type=int, metavar="N", help=CHANNEL_HELP[command])
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
    _add_read_options(t, "train")
    t.add_argument(
        "--motion-channel",
        type=int,
        metavar="N",
        help="multi-channel file: estimate the one motion of all channels from channel N "
        "(default: from the mean of the normalized channels)",
    )
    t.add_argument("--steps", type=int, help=fields["steps"].description)
    t.add_argument(
        "--time-limit", type=float, metavar="SECONDS", help=fields["time_limit"].description
    )
    t.add_argument("--device", choices=DEVICES, help=fields["device"].description)
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
    t.set_defaults(command="train")

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
    r.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to render: auto (a CUDA GPU, else an Apple GPU, else the CPU), cpu, cuda, mps",
    )
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
    r.set_defaults(command="render")

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
    _add_read_options(e, "evaluate")
    e.add_argument("-o", "--output", metavar="REPORT.json", help="write the report (JSON+CSV+PNG)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing report")
    e.add_argument("--force", action="store_true", help=FORCE_HELP)
    e.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    e.set_defaults(command="evaluate")

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
        choices=DEVICES,
        default="auto",
        help="where flows the model did not store are solved (auto: a GPU when there is one)",
    )
    m.add_argument("--overwrite", action="store_true", help="replace an existing output")
    m.add_argument("--force", action="store_true", help=FORCE_HELP)
    m.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    m.set_defaults(command="motion")

    i = sub.add_parser("info", help="describe a model directory")
    i.add_argument("model_dir")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(command="info")

    d = sub.add_parser("demo", help="train and render the synthetic sample stack (a quick tour)")
    d.add_argument("-o", "--output", default="spatimeinr-demo", help="folder for the demo files")
    d.add_argument("--method", choices=["spatimeinr", *CLASSICAL_METHODS], default="spatimeinr")
    d.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overwrite", action="store_true", help="reuse a non-empty folder")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    d.set_defaults(command="demo")
    return p
