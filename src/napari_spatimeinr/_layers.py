"""Layer descriptions shared by the napari hooks and widgets (plain dicts: no napari import).

A layer made by this plugin carries ``metadata["spatimeinr"]``: the axis order of its data, the voxel
size (z, y, x) in µm, the frame interval in s, the origin and the source file, so the widgets and the
writer can recover the physical metadata even when the layer's scale was edited.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .data.stack import Stack4D
from .store.model_dir import CHANNEL_KEY, ModelDir

META_KEY = "spatimeinr"
AXIS_LABELS = ("t", "z", "y", "x")
UNITS = ("s", "µm", "µm", "µm")


def stack_metadata(stack: Stack4D) -> dict[str, Any]:
    """The ``metadata["spatimeinr"]`` entry of a TZYX layer holding ``stack``."""
    return {
        "axes": "TZYX",
        "source_axes": stack.source_axes,
        "voxel_size": list(stack.voxel_size),
        "frame_interval": stack.frame_interval,
        "origin": list(stack.origin),
        "source_path": stack.source_path,
        "source_sha256": stack.source_sha256,
    }


def stack_layer_kwargs(stack: Stack4D, **extra: Any) -> dict[str, Any]:
    """napari Image layer keyword arguments for a TZYX :class:`Stack4D` at its physical scale."""
    from .data.normalize import Normalization

    norm = Normalization.fit(stack.data)  # the same range the models and their renders use
    kw: dict[str, Any] = {
        "name": stack.name,
        "contrast_limits": (norm.low, norm.high),
        "scale": stack.scale_tzyx,
        "translate": tuple(stack.origin),
        "metadata": {META_KEY: stack_metadata(stack)},
        "axis_labels": AXIS_LABELS,
        "units": UNITS,
    }
    kw.update(extra)
    return kw


def model_input_kwargs(md: ModelDir) -> dict[str, Any]:
    """Layer kwargs of the input a model was trained on (raw intensity units); the input of one
    channel of a multi-channel model is named and coloured as that channel."""
    stack = md.stack()
    kw = stack_layer_kwargs(stack, name=f"{md.name} (input)")
    kw["contrast_limits"] = (md.norm.low, md.norm.high)
    kw["metadata"][META_KEY]["model_dir"] = str(Path(md.path).resolve())
    if CHANNEL_KEY in md.meta:
        kw = channel_layer_kwargs(kw, md)
        kw["name"] = f"{md.name} {md.meta[CHANNEL_KEY]['name']} (input)"
    return kw


def channel_layer_kwargs(kw: dict[str, Any], md: ModelDir, colormap: bool = True) -> dict[str, Any]:
    """``kw`` for the layer of one channel of a multi-channel model: the channel's name added,
    its colour as the colormap (unless ``colormap`` is False), additive blending (the channels of
    one image shown together, as napari's ``channel_axis`` does)."""
    info = md.meta.get(CHANNEL_KEY)
    if not info:
        return kw
    out = dict(kw)
    name = str(info.get("name", ""))
    base = str(kw.get("name", md.name))
    out["name"] = f"{base} [{name}]"
    if colormap:
        out["colormap"] = str(info.get("color", "gray"))
    out["blending"] = "additive"
    out["metadata"] = {META_KEY: {**kw.get("metadata", {}).get(META_KEY, {}), "channel": name}}
    return out


METHOD_LABELS = {"spatimeinr": "SpatimeINR"}


def render_layer_name(plan: Any, md: ModelDir) -> str:
    """A readable layer name: the input's, the method and the factors that are not 1.

    E.g. ``"nuclei · SpatimeINR t×4 z×2"`` (4 times more frames, twice as many z planes).
    """
    factors = plan.meta.provenance.get("factors") or {}
    parts = [f"{axis}×{float(f):g}" for axis, f in factors.items() if float(f) != 1.0]
    method = METHOD_LABELS.get(md.method, md.method)
    return f"{md.name} · {method} {' '.join(parts) or '×1'}"


def render_layer_kwargs(plan: Any, md: ModelDir) -> dict[str, Any]:
    """Layer kwargs of a lazy render of ``plan``: its physical scale and origin, the model's range."""
    meta = plan.meta
    return {
        "name": render_layer_name(plan, md),
        "scale": meta.scale_tzyx,
        "translate": tuple(meta.origin),
        "contrast_limits": (md.norm.low, md.norm.high),
        "metadata": {
            META_KEY: {
                "axes": "TZYX",
                "voxel_size": list(meta.voxel_size),
                "frame_interval": meta.frame_interval,
                "origin": list(meta.origin),
                "model_dir": str(Path(md.path).resolve()),
                "factors": meta.provenance.get("factors"),
            }
        },
        "axis_labels": AXIS_LABELS,
        "units": UNITS,
    }


def browse_chunks(shape: tuple[int, ...], max_voxels: int = 2**20) -> tuple[int, int, int, int]:
    """Chunks for browsing a render: one (y, x) plane each, split along y above ``max_voxels``.

    A slider step then computes exactly the plane in view (a 3D view: the planes of one frame),
    where the export's chunks (several frames or planes, for throughput) would compute many.
    """
    _, _, ny, nx = (int(s) for s in shape)
    return (1, 1, max(1, min(ny, max_voxels // max(1, nx))), nx)


def browse_cost(plan: Any) -> Any:
    """The :class:`~napari_spatimeinr.limits.RenderCost` of ``plan`` browsed as a lazy layer."""
    import math

    from .limits import RenderCost

    chunk = browse_chunks(plan.shape)
    n = math.prod(-(-int(s) // c) for s, c in zip(plan.shape, chunk, strict=True))
    return RenderCost(tuple(plan.shape), tuple(plan.grid.full_shape), chunk, n, 1)


def browse_plan(plan: Any) -> Any:
    """``plan`` with :func:`browse_chunks` (same grid and metadata) for a lazy layer.

    Refused (:func:`napari_spatimeinr.limits.check_view`) before the layer's task graph is built
    when one displayed plane, or the graph itself, would not fit in memory.
    """
    import dask.array as da

    from .limits import check_view

    check_view(browse_cost(plan))
    chunks = da.core.normalize_chunks(browse_chunks(plan.shape), plan.shape)
    return dataclasses.replace(plan, chunks=chunks)


#: napari colormap of uncertainty layers (sequential: dark = certain, bright = likely wrong)
UNCERTAINTY_COLORMAP = "inferno"


def uncertainty_layer_kwargs(plan: Any, md: ModelDir) -> dict[str, Any]:
    """Layer kwargs of a render's uncertainty map: the render's scale and origin, a sequential
    colormap, additive blending over the render, contrast from 0 to three times the mean error
    of the calibration (never computed from the lazy data)."""
    from .engines.fast import uncertainty

    kw = render_layer_kwargs(plan, md)
    cal = uncertainty.load(Path(md.path) / uncertainty.UNCERTAINTY_FILE)
    mean = float(cal.fit.get("mean_abs_error", 0.0)) if cal is not None else 0.0
    high = 3.0 * mean if mean > 0 else 0.1
    kw.update(
        name=f"{kw['name']} uncertainty",
        contrast_limits=(0.0, high * md.norm.span),
        colormap=UNCERTAINTY_COLORMAP,
        blending="additive",
    )
    kw["metadata"][META_KEY]["content"] = "uncertainty (expected absolute error)"
    return kw
