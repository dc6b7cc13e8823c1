"""napari reader hook: 4D stacks (TIFF, OME-TIFF, NIfTI, OME-Zarr, .npy; .czi, .nd2, .lif with the
``formats`` extra, else one line saying what to install) and model directories.

A stack opens as one TZYX image layer at its physical scale (s, µm, µm, µm). A model directory (a
folder with ``meta.json`` and ``config.yaml``) opens as the input it was trained on plus a lazy render
of the model beside it (×2 in time when the input has several frames, else ×1), whose slices are
computed in a worker thread as the sliders move (see :mod:`._widgets.async_layer`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._layers import (
    browse_plan,
    model_input_kwargs,
    render_layer_kwargs,
    stack_layer_kwargs,
)
from .io.formats import SUPPORTED_READ_SUFFIXES, suffix_of

LayerData = tuple[Any, dict[str, Any], str]


def is_model_dir(path: str | Path) -> bool:
    """A folder holding ``meta.json`` and ``config.yaml`` (what training writes)."""
    p = Path(path)
    return p.is_dir() and (p / "meta.json").is_file() and (p / "config.yaml").is_file()


def _readable(path: str | Path) -> bool:
    if is_model_dir(path):
        return True
    return suffix_of(path) in SUPPORTED_READ_SUFFIXES


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader function for ``path`` (or a list of paths), or ``None`` if not ours."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or not all(_readable(p) for p in paths):
        return None
    return read_paths


def read_paths(path: str | list[str]) -> list[LayerData]:
    """Layer data for each path (a stack, or a model directory's input and lazy render)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    out: list[LayerData] = []
    for p in paths:
        out.extend(read_model_dir(p) if is_model_dir(p) else read_stack_layer(p))
    return out


def read_stack_layer(path: str | Path) -> list[LayerData]:
    """One TZYX image layer of a stack file, at its physical scale."""
    from . import api

    stack = api.read(path)
    return [(stack.data, stack_layer_kwargs(stack), "image")]


def model_render_plan(md: Any) -> Any:
    """The default render of a model directory: ×2 in time when it has several frames, else ×1."""
    from . import api

    scale_t = 2.0 if md.shape[0] > 1 else 1.0
    return api.plan_render(md, scale_t=scale_t, scale_zyx=(1.0, 1.0, 1.0))


def read_model_dir(path: str | Path) -> list[LayerData]:
    """The input a model was trained on and a lazy render of the model (dask) beside it."""
    from . import api

    md = api.open_model(path)
    plan = browse_plan(model_render_plan(md))  # one plane per chunk: a slider step, one plane
    lazy = api.render_plan(plan)
    try:  # computed plane by plane off the GUI thread (needs Qt, as napari itself)
        from ._widgets.async_layer import async_array

        data: Any = async_array(lazy, processes=True)
    except ImportError:  # pragma: no cover - no Qt binding: napari computes the dask array itself
        data = lazy
    kw = render_layer_kwargs(plan, md)
    kw["multiscale"] = False
    return [(md.stack().data, model_input_kwargs(md), "image"), (data, kw, "image")]
