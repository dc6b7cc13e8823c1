"""Command lines and SLURM batch scripts for what was set up in the GUI ("Copy command", "Save job
script…" in the Train and Render & Export widgets; ``docs/cluster.md``).

The widgets collect their settings into the same typed configs the CLI validates
(:class:`~napari_spatimeinr.core.config.TrainConfig`, :class:`~napari_spatimeinr.core.config.RenderConfig`);
this module turns them into an argv list (:func:`train_argv`, :func:`render_argv`), quoted for a
POSIX shell with :func:`shlex.join`, and wraps that line in a batch script whose resources come from
the cost estimates of :mod:`napari_spatimeinr.limits` (:func:`train_resources`,
:func:`render_resources`, :func:`slurm_script`).

Only fields that differ from their defaults are written, so the line stays short and readable. A
field with its own CLI flag uses it (tables :data:`TRAIN_FLAGS`, :data:`RENDER_FLAGS`: a new flag
is one entry there); every other config field goes through ``--set KEY=VALUE`` (dotted keys for
the engine's ``params``), so a config field added later reaches the command without new code here.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..core.config import RenderConfig, TrainConfig
from ..core.errors import SpatimeINRError

#: the console script the commands start with
PROGRAM = "spatimeinr"

#: TrainConfig field → its ``spatimeinr train`` flag (others: ``--set field=value``)
TRAIN_FLAGS: dict[str, str] = {
    "method": "--method",
    "preset": "--preset",
    "steps": "--steps",
    "time_limit": "--time-limit",
    "device": "--device",
    "seed": "--seed",
}

#: RenderConfig field → its ``spatimeinr render`` flag (every RenderConfig field has one)
RENDER_FLAGS: dict[str, str] = {
    "scale_t": "--scale-t",
    "scale_z": "--scale-z",
    "scale_y": "--scale-y",
    "scale_x": "--scale-x",
    "t_range": "--t-range",
    "roi": "--roi",
    "dtype": "--dtype",
    "device": "--device",
    "keep_measured": "--keep-measured",
    "chunk_mb": "--chunk-mb",
}

#: Python, torch and the libraries loaded, before any data (added to every memory estimate)
BASE_MEMORY_BYTES = 2 * 2**30
#: render speed assumed when none was measured: the slowest learned render measured on 2 CPU
#: cores (benchmarks/RESULTS.md, tz_yeast 5.6e5 voxels/s), so the request errs on the long side
DEFAULT_RENDER_VOXELS_PER_S = 5e5
#: a render longer than this on one node runs on a dask cluster of several nodes (``--scheduler``)
CLUSTER_ABOVE_SECONDS = 2 * 3600.0
#: most nodes a generated render job asks for
MAX_NODES = 8
#: requested time = estimate × this + :data:`TIME_MARGIN_S` (start-up, reading, writing)
TIME_FACTOR = 1.5
TIME_MARGIN_S = 15 * 60.0
#: time requested for training without a time limit (the preset's steps; no reliable estimate)
UNLIMITED_TRAIN_SECONDS = 24 * 3600.0


def _text(value: Any) -> str:
    """A config value as a CLI argument: shortest exact form for numbers, true/false for bools."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def flag_args(flag: str, value: Any) -> list[str]:
    """``[flag, value...]`` for one option: a bool is a switch (present when true), a tuple gives
    one argument per item (``--roi Z0 Z1 ...``), ``None`` nothing."""
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, tuple | list):
        return [flag, *(_text(v) for v in value)]
    return [flag, _text(value)]


def _non_default(model: BaseModel) -> dict[str, Any]:
    """The fields of ``model`` whose value differs from the field's default, in field order."""
    out = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value != field.get_default(call_default_factory=True):
            out[name] = value
    return out


def _set_args(prefix: str, values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            args += _set_args(f"{key}.", _non_default(value))
        elif value is not None:
            args += ["--set", f"{key}={_text(value)}"]
    return args


def _abs(path: str | Path) -> str:
    """An absolute path (the command may run elsewhere: a job starts in the submit folder)."""
    return os.path.abspath(os.path.expanduser(str(path)))


def train_argv(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path,
    config: TrainConfig,
    *,
    axes: str | None = None,
    channel: int | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    frame_interval: float | None = None,
    overwrite: bool = False,
    init_from: str | Path | None = None,
) -> list[str]:
    """The ``spatimeinr train`` argv (program name first) that trains ``config`` on ``inputs``.

    Run, it writes a model directory whose ``config.yaml`` is ``config``. Paths are made absolute.
    ``init_from``: a model to start from (``--init-from``, a warm start).
    """
    paths = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not paths:
        raise SpatimeINRError("No input stack: the command needs the file the layer came from.")
    argv = [PROGRAM, "train", *(_abs(p) for p in paths), "-o", _abs(output)]
    argv += flag_args("--axes", axes)
    argv += flag_args("--channel", channel)
    argv += flag_args("--voxel-size", tuple(voxel_size) if voxel_size is not None else None)
    argv += flag_args("--frame-interval", frame_interval)
    rest: dict[str, Any] = {}
    for name, value in _non_default(config).items():
        if name in TRAIN_FLAGS:
            argv += flag_args(TRAIN_FLAGS[name], value)
        else:
            rest[name] = value
    argv += _set_args("", rest)
    argv += flag_args("--init-from", _abs(init_from) if init_from else None)
    argv += flag_args("--overwrite", overwrite)
    return argv


def render_argv(
    model_dir: str | Path,
    output: str | Path,
    settings: RenderConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    uncertainty: str | Path | None = None,
) -> list[str]:
    """The ``spatimeinr render`` argv (program name first) for ``settings``. Paths are made absolute.

    ``uncertainty``: also write the render's uncertainty map to that file (``--uncertainty``).

    A dask scheduler is not part of it: a job script appends ``--scheduler`` with the address
    of the cluster it starts (:func:`slurm_script`).
    """
    settings = settings or RenderConfig()
    argv = [PROGRAM, "render", _abs(model_dir), "-o", _abs(output)]
    for name, value in _non_default(settings).items():
        argv += flag_args(RENDER_FLAGS[name], value)
    argv += flag_args("--uncertainty", _abs(uncertainty) if uncertainty else None)
    argv += flag_args("--workers", workers)
    argv += flag_args("--overwrite", overwrite)
    return argv


def command_line(argv: Sequence[str]) -> str:
    """``argv`` as one line for a POSIX shell (bash, zsh), every argument quoted where needed."""
    return shlex.join([str(a) for a in argv])


def file_axes(layer_axes: str, chosen: str, source_axes: str | None) -> str | None:
    """The ``--axes`` that reads a layer's source file the way the GUI reads the layer.

    ``layer_axes`` are the letters of the layer's dimensions as loaded, ``chosen`` the ones the
    user confirmed (or corrected) in the widget, ``source_axes`` the file's own axes when the
    plugin's reader made the layer (it stores the data as TZYX), else None (the layer holds the
    file's array as stored, so ``chosen`` applies to the file directly). A relabelling of the
    layer's dimensions is carried over to the file's axes.
    """
    chosen = chosen.upper()
    if not source_axes:
        return chosen
    if len(chosen) != len(layer_axes):
        raise SpatimeINRError(
            f"Axes {chosen!r} do not match the layer's {len(layer_axes)} dimensions."
        )
    relabel = dict(zip(layer_axes.upper(), chosen, strict=True))
    return "".join(relabel.get(a, a) for a in source_axes.upper())


# -- resources ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobResources:
    """What a batch job asks the scheduler for, and why (shown as comments in the script)."""

    seconds: float
    memory_bytes: int
    cpus: int
    gpus: int = 0
    nodes: int = 1
    notes: tuple[str, ...] = ()

    @property
    def slurm_time(self) -> str:
        """``--time``: whole minutes, rounded up; ``D-HH:MM:SS`` from one day on."""
        minutes = max(1, math.ceil(self.seconds / 60))
        d, rest = divmod(minutes, 24 * 60)
        h, m = divmod(rest, 60)
        return f"{d}-{h:02d}:{m:02d}:00" if d else f"{h:02d}:{m:02d}:00"

    @property
    def slurm_mem(self) -> str:
        """``--mem``: whole GiB (SLURM's ``G``), rounded up."""
        return f"{max(1, math.ceil(self.memory_bytes / 2**30))}G"


def _request_seconds(estimate: float) -> float:
    return estimate * TIME_FACTOR + TIME_MARGIN_S


def train_resources(
    shape: tuple[int, int, int, int], config: TrainConfig, *, cpus: int | None = None
) -> JobResources:
    """Resources of a training job on an input of ``shape`` (T, Z, Y, X).

    Memory: :class:`~napari_spatimeinr.limits.TrainCost` peak plus :data:`BASE_MEMORY_BYTES`.
    Time: the time limit with a margin (the classical methods need minutes; without a limit,
    :data:`UNLIMITED_TRAIN_SECONDS`). One GPU when the device is ``cuda``.
    """
    from ..core.config import CLASSICAL_METHODS
    from ..engines.presets import engine_of
    from ..limits import TrainCost

    cost = TrainCost(tuple(int(s) for s in shape), engine_of(config))  # type: ignore[arg-type]
    memory = cost.peak_bytes + BASE_MEMORY_BYTES
    notes = [f"memory: training's peak estimate {_gb(cost.peak_bytes)} + {_gb(BASE_MEMORY_BYTES)}"]
    if config.method in CLASSICAL_METHODS:
        seconds = TIME_MARGIN_S
        notes.append(f"time: {config.method} needs no training (start-up and writing only)")
    elif config.time_limit:
        seconds = _request_seconds(config.time_limit)
        notes.append(
            f"time: the time limit {config.time_limit:g} s × {TIME_FACTOR:g} + "
            f"{TIME_MARGIN_S / 60:g} min (reading, flows, writing)"
        )
    else:
        seconds = UNLIMITED_TRAIN_SECONDS
        notes.append(
            "time: no time limit was set, so the preset's steps run; "
            f"{UNLIMITED_TRAIN_SECONDS / 3600:g} h requested (set a time limit for a tighter request)"
        )
    gpus = 1 if config.device == "cuda" else 0
    if config.device == "auto":
        notes.append("device auto: add '--gres=gpu:1' to train on a GPU where the nodes have one")
    return JobResources(
        seconds=seconds,
        memory_bytes=memory,
        cpus=cpus or (4 if gpus else 8),
        gpus=gpus,
        notes=tuple(notes),
    )


def render_resources(
    input_shape: tuple[int, int, int, int],
    settings: RenderConfig,
    *,
    model_bytes: int = 0,
    voxels_per_second: float | None = None,
    train_device: str = "auto",
    cpus: int | None = None,
    output: str | Path | None = None,
    uncertainty: bool = False,
) -> JobResources:
    """Resources of a render job of a model of ``input_shape`` with ``settings``.

    Memory: :meth:`~napari_spatimeinr.limits.RenderCost.peak_bytes` with one worker per CPU plus
    :data:`BASE_MEMORY_BYTES`. Time: output voxels / ``voxels_per_second`` (measured in the GUI,
    else :data:`DEFAULT_RENDER_VOXELS_PER_S`). A render estimated over
    :data:`CLUSTER_ABOVE_SECONDS` is spread over several nodes (``nodes`` > 1: the script starts a
    dask cluster and the command gets ``--scheduler``). One GPU per node when the render device is
    ``cuda``, or ``auto`` for a model trained on ``cuda``. With ``output``, a multi-node render
    to a single-file format gets a note suggesting ``.zarr`` (which every node writes itself).
    ``uncertainty``: the command also writes the uncertainty map (``--uncertainty``), a second
    pass over the same grid, counted at the same speed (twice the voxels).
    """
    from ..limits import render_cost

    cpus = cpus or 8
    cost = render_cost(
        input_shape,
        settings.scale_t,
        settings.scale_zyx,
        settings.t_range,
        settings.roi,
        chunk_mb=settings.chunk_mb,
        workers=cpus,
    )
    speed = voxels_per_second or DEFAULT_RENDER_VOXELS_PER_S
    passes = 2 if uncertainty else 1
    one_node = passes * cost.voxels / speed
    nodes = 1
    if one_node > CLUSTER_ABOVE_SECONDS:
        nodes = min(MAX_NODES, math.ceil(one_node / CLUSTER_ABOVE_SECONDS))
    peak = cost.peak_bytes(model_bytes)
    where = "measured here" if voxels_per_second else "assumed, nothing measured yet"
    notes = [
        f"output {cost.describe()}; memory: render peak {_gb(peak)} + {_gb(BASE_MEMORY_BYTES)}",
        f"time: at {speed:.3g} voxels/s ({where}) {_minutes(one_node)} on one node"
        + (" (render + uncertainty map)" if uncertainty else "")
        + (f", spread over {nodes} nodes" if nodes > 1 else "")
        + f"; × {TIME_FACTOR:g} + {TIME_MARGIN_S / 60:g} min",
    ]
    if nodes > 1 and output is not None and not str(output).rstrip("/").endswith(".zarr"):
        notes.append(
            "output: a single file is written by the first node alone (the others send it "
            "their chunks); a .zarr output is written by every node in parallel"
        )
    gpu = settings.device == "cuda" or (settings.device == "auto" and train_device == "cuda")
    return JobResources(
        seconds=_request_seconds(one_node / nodes),
        memory_bytes=peak + BASE_MEMORY_BYTES,
        cpus=cpus,
        gpus=1 if gpu else 0,
        nodes=nodes,
        notes=tuple(notes),
    )


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return "under 1 min"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# -- SLURM ----------------------------------------------------------------------------------------
#: the variable holding the dask scheduler file in a multi-node render job
SCHEDULER_VAR = "SCHED"


def slurm_script(
    argv: Sequence[str],
    resources: JobResources,
    *,
    job_name: str = "spatimeinr",
    setup: str = "",
) -> str:
    """A SLURM batch script that runs ``argv`` (quoted as :func:`command_line`) with ``resources``.

    ``setup`` is a shell line that makes ``spatimeinr`` available (``module load …``, ``source
    …/activate``); left empty, the script says where to put it. With ``resources.nodes > 1`` the
    script starts a dask scheduler and one worker per node inside the allocation and runs the
    command with ``--scheduler`` (a render: see ``docs/cluster.md``).
    """
    from .. import __version__

    line = command_line(argv)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in job_name) or "spatimeinr"
    r = resources
    head = [
        "#!/bin/bash",
        f"# Written by napari-spatimeinr {__version__}. Submit with: sbatch THIS_FILE",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --time={r.slurm_time}",
        f"#SBATCH --nodes={r.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={r.cpus}",
        f"#SBATCH --mem={r.slurm_mem}",
    ]
    if r.gpus:
        head.append(f"#SBATCH --gres=gpu:{r.gpus}")
    head += [
        "#SBATCH --output=%x-%j.log",
        "# Your cluster may need these (remove one '#' to use them):",
        "##SBATCH --partition=PARTITION",
        "##SBATCH --account=ACCOUNT",
        "#",
        "# Resources estimated by napari-spatimeinr:",
        *(f"#   {n}" for n in r.notes),
        "",
        "set -e",
    ]
    env = setup.strip() or (
        "# Make spatimeinr available here, e.g.: module load python; "
        "source /path/to/venv/bin/activate\n"
        f"# (this script was written from the Python environment {sys.prefix})"
    )
    body = [
        env,
        "# the cores SLURM gave this job (not all of the node's) for torch and dask threads",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        'export DASK_NUM_WORKERS="${SLURM_CPUS_PER_TASK:-1}"',
        "",
    ]
    if r.nodes <= 1:
        body.append(line)
    else:
        var = SCHEDULER_VAR
        body += [
            "# a dask scheduler on the first node, one worker per node (docs/cluster.md);",
            "# the scheduler file must be on a filesystem all nodes share",
            f'{var}="${{SLURM_SUBMIT_DIR:-$PWD}}/dask-scheduler-${{SLURM_JOB_ID}}.json"',
            "# (port 0: a free port, so two jobs on one node do not collide)",
            f'srun --nodes=1 --ntasks=1 --overlap dask scheduler --scheduler-file "${var}" '
            "--port 0 --no-dashboard &",
            "SCHED_PID=$!",
            f'while [ ! -f "${var}" ]; do sleep 2; done',
            f'srun --ntasks="$SLURM_NNODES" --overlap dask worker --scheduler-file "${var}" '
            '--nthreads "$SLURM_CPUS_PER_TASK" --local-directory "${TMPDIR:-/tmp}" &',
            "WORKERS_PID=$!",
            "status=0",
            f'{line} --scheduler "${var}" || status=$?',
            "# stop the workers first, then the scheduler",
            'kill "$WORKERS_PID" 2>/dev/null || true',
            'wait "$WORKERS_PID" 2>/dev/null || true',
            'kill "$SCHED_PID" 2>/dev/null || true',
            f'rm -f "${var}"',
            'exit "$status"',
        ]
    return "\n".join(head + body) + "\n"


def write_job_script(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Write a job script (executable); an existing file is replaced only with ``overwrite``."""
    from ..core.resources import check_writable

    p = Path(path).expanduser()
    if p.exists() and not overwrite:
        raise SpatimeINRError(f"{p} already exists: choose another name, or agree to replace it.")
    if p.is_dir():
        raise SpatimeINRError(f"{p} is a folder: choose a file name for the job script.")
    check_writable(p, "job script")
    p.write_text(text)
    p.chmod(0o755)
    return p
