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


def create_zarr(
    path: Path,
    shape: tuple[int, int, int, int],
    chunks: tuple[int, int, int, int],
    meta: OutputMeta,
    enc: Encoder,
) -> Any:
    """Create the OME-Zarr group and its (empty) full-resolution array; return the array."""
    import warnings

    import zarr

    with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = group.create_array(
        "0",
        shape=shape,
        chunks=chunks,
        dtype=enc.dtype,
        fill_value=0,
        dimension_names=[a["name"] for a in AXES],
    )
    transforms: list[dict[str, Any]] = [
        {"type": "scale", "scale": [float(meta.frame_interval), *map(float, meta.voxel_size)]}
    ]
    if any(float(o) != 0.0 for o in meta.origin):
        transforms.append({"type": "translation", "translation": [float(o) for o in meta.origin]})
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": transforms}],
        axes=AXES,
        name=meta.name,
    )
    group.attrs[PROVENANCE_KEY] = provenance_dict(meta, enc, final=False)
    return arr


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
    arr[t0:t1, z0:z1, y0:y1, :] = local(np.asarray(block))
    return local.clipped_low, local.clipped_high, local.nan


def finish_zarr(path: Path, meta: OutputMeta, enc: Encoder) -> None:
    """Record the final provenance (with the clip counts)."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    group.attrs[PROVENANCE_KEY] = provenance_dict(meta, enc, final=True)
