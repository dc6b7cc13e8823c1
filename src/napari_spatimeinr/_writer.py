"""napari writer hook: save an image layer as ImageJ TIFF, OME-TIFF, NIfTI or OME-Zarr.

The voxel size (µm) and frame interval (s) written come from the layer's ``scale`` (axes from the
plugin's layer metadata, else T,Z,Y,X counted from the right), the origin from its ``translate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._layers import META_KEY
from .core.errors import SpatimeINRError
from .io.meta import OutputMeta

_AXES_BY_NDIM = {2: "YX", 3: "ZYX", 4: "TZYX"}


def layer_axes(ndim: int, metadata: dict[str, Any] | None) -> str:
    """The axis letters of a layer's data: from the plugin's metadata, else by dimensionality."""
    axes = ((metadata or {}).get(META_KEY) or {}).get("axes")
    if axes and len(axes) == ndim:
        return str(axes)
    if ndim not in _AXES_BY_NDIM:
        raise SpatimeINRError(
            f"Cannot save a {ndim}D layer: split channels first (Layers → Split stack) so each "
            "layer has at most the axes T, Z, Y, X."
        )
    return _AXES_BY_NDIM[ndim]


def layer_output_meta(ndim: int, attributes: dict[str, Any], axes: str) -> OutputMeta:
    """Physical metadata for the writers from a layer's scale/translate (by axis letter)."""
    scale = dict(zip(axes, attributes.get("scale") or (1.0,) * ndim, strict=True))
    shift = dict(zip(axes, attributes.get("translate") or (0.0,) * ndim, strict=True))
    md = (attributes.get("metadata") or {}).get(META_KEY) or {}
    prov = {"software": "napari-spatimeinr", "what": "napari layer"}
    if md.get("model_dir"):
        prov["model_dir"] = md["model_dir"]
    if md.get("factors"):
        prov["factors"] = md["factors"]
    return OutputMeta(
        voxel_size=tuple(float(scale.get(a, 1.0)) for a in "ZYX"),  # type: ignore[arg-type]
        frame_interval=float(scale.get("T", 1.0)),
        origin=tuple(float(shift.get(a, 0.0)) for a in "TZYX"),  # type: ignore[arg-type]
        name=str(attributes.get("name") or "layer"),
        provenance=prov,
    )


def write_image(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write one image layer (numpy or dask) with its physical metadata; returns the path written."""
    import dask.array as da

    from . import api
    from .data.axes import to_tzyx

    if attributes.get("rgb"):
        raise SpatimeINRError(
            "RGB layers are not fluorescence stacks: save them with napari's writer."
        )
    if attributes.get("multiscale") or isinstance(data, list):
        data = data[0]
    data = getattr(data, "dask", data)  # a lazy render shown by an async layer: its dask array
    ndim = len(data.shape)
    axes = layer_axes(ndim, attributes.get("metadata"))
    meta = layer_output_meta(ndim, attributes, axes)
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    if axes != "TZYX":
        arr = da.from_array(to_tzyx(np.asarray(arr), axes))
    model_dir = ((attributes.get("metadata") or {}).get(META_KEY) or {}).get("model_dir")
    if model_dir:  # a model's render: its input's range, never computed from the lazy data
        md = api.open_model(model_dir)
        lo, hi = md.norm.raw_min, md.norm.raw_max
        meta.source_dtype = str(md.meta.get("source_dtype", "float32"))
    else:
        lo, hi = (float(v) for v in da.compute(arr.min(), arr.max()))
        meta.source_dtype = str(data.dtype)
    meta.intensity_range = (float(lo), float(hi))
    dtype = "uint16" if np.dtype(data.dtype).kind in "ui" and hi <= 65535 and lo >= 0 else "float32"
    out = api.export(arr.astype(np.float32), path, meta, dtype=dtype, overwrite=True)
    return [str(Path(out))]
