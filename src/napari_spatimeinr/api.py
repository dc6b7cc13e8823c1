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

from pathlib import Path
from typing import Any

from .core.progress import Progress
from .data.stack import ChannelStack, Stack4D
from .io.meta import OutputMeta
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
from .store.model_dir import ModelDir
from .workflows.export import export, export_motion, motion
from .workflows.train import read, train, train_config

__all__ = [
    "ChannelStack",
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


def open_model(path: str | Path) -> ModelDir:
    """Open a model directory (raises a clear error if it is missing or incomplete)."""
    return ModelDir(path)


def evaluate(*args: Any, **kwargs: Any):
    """Hold-out evaluation against interpolation baselines (see :mod:`.evaluate.protocol`)."""
    from .workflows.evaluate.protocol import run_evaluation

    return run_evaluation(*args, **kwargs)


# Re-exported so scripts need only ``api``.
render = render
plan_render = plan_render
render_plan = render_plan
render_outputs = render_outputs
uncertainty_path = uncertainty_path
estimate_seconds = estimate_seconds
