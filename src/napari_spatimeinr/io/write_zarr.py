"""OME-Zarr writer: NGFF 0.5 (Zarr v3) via ome-zarr, one resolution level, written in parallel.

Each slab group is stored by dask tasks that encode their own block and write whole Zarr chunks
(chunk shape = the dask chunk shape), so workers never write the same chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .encode import Encoder, provenance_dict
from .meta import OutputMeta
from .source import PROVENANCE_KEY

AXES = [
    {"name": "t", "type": "time", "unit": "second"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


CHANNEL_AXIS = {"name": "c", "type": "channel"}


def create_zarr(
    path: Path,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    meta: OutputMeta,
    enc: Encoder,
) -> Any:
    """Create the OME-Zarr group and its (empty) full-resolution array; return the array.

    A 5D ``shape`` is TCZYX (a multi-channel render): axes t, c, z, y, x, and the channels'
    names and colours in ``omero``."""
    import warnings

    import zarr

    with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    multi = len(shape) == 5
    axes = [AXES[0], CHANNEL_AXIS, *AXES[1:]] if multi else AXES
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = group.create_array(
        "0",
        shape=shape,
        chunks=chunks,
        dtype=enc.dtype,
        fill_value=0,
        dimension_names=[a["name"] for a in axes],
    )
    scale = [float(meta.frame_interval), *map(float, meta.voxel_size)]
    origin = [float(o) for o in meta.origin]
    if multi:
        scale.insert(1, 1.0)
        origin.insert(1, 0.0)
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if any(o != 0.0 for o in origin):
        transforms.append({"type": "translation", "translation": origin})
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": transforms}],
        axes=axes,
        name=meta.name,
    )
    if multi:
        _omero_channels(group, meta, int(shape[1]))
    group.attrs[PROVENANCE_KEY] = provenance_dict(meta, enc, final=False)
    return arr


def _omero_channels(group: Any, meta: OutputMeta, n: int) -> None:
    """The channels' names, colours and display windows (``omero``, as NGFF viewers read it)."""
    from ..data.stack import COLOR_HEX, DEFAULT_CHANNEL_COLORS

    names = list(meta.channel_names or [])
    if len(names) != n:
        names = [f"C{c}" for c in range(n)]
    colors = list(meta.channel_colors or [])
    if len(colors) != n:
        colors = [DEFAULT_CHANNEL_COLORS[c % len(DEFAULT_CHANNEL_COLORS)] for c in range(n)]
    lo, hi = (float(v) for v in meta.intensity_range)
    ome = dict(group.attrs.get("ome", {}))
    ome["omero"] = {
        "channels": [
            {
                "label": name,
                "color": COLOR_HEX.get(color, "FFFFFF"),
                "active": True,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
            for name, color in zip(names, colors, strict=True)
        ]
    }
    group.attrs["ome"] = ome


def encoder_params(enc: Encoder) -> tuple[str, str, float, float]:
    """What a task needs to rebuild the encoder (an Encoder holds a lock: not picklable)."""
    return (enc.dtype, enc.mapping, enc.scale, enc.offset)


def store_block(
    block: np.ndarray, arr: Any, region: tuple[int, ...], params: tuple[str, str, float, float]
) -> tuple[int, int, int]:
    """Encode ``block`` and write it at ``region`` (t0, t1, z0, z1, y0, y1); return the counts."""
    dtype, mapping, scale, offset = params
    local = Encoder(dtype=dtype, mapping=mapping, scale=scale, offset=offset)
    t0, t1, z0, z1, y0, y1 = region
    if len(arr.shape) == 5:  # TCZYX written as its planes (T, C·Z, Y, X): one channel's slab
        nz = int(arr.shape[2])
        c = z0 // nz
        arr[t0:t1, c, z0 - c * nz : z1 - c * nz, y0:y1, :] = local(np.asarray(block))
    else:
        arr[t0:t1, z0:z1, y0:y1, :] = local(np.asarray(block))
    return local.clipped_low, local.clipped_high, local.nan


def finish_zarr(path: Path, meta: OutputMeta, enc: Encoder) -> None:
    """Record the final provenance (with the clip counts)."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    group.attrs[PROVENANCE_KEY] = provenance_dict(meta, enc, final=True)
