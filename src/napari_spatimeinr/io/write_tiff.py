"""TIFF writers: ImageJ hyperstack (.tif) and OME-TIFF (.ome.tif, BigTIFF).

The file's structure (tags, metadata, page directories) is written first by tifffile with empty,
contiguous image data (a sparse file); the slabs are then written into the data region at their
offsets, and the header's clip-count stand-ins are filled in at the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..core.errors import SpatimeINRError
from .encode import Encoder, patch_tokens, provenance_json
from .meta import OutputMeta

IMAGEJ_MAX_BYTES = 2**32 - 1
_IMAGEJ_INFO = 50839  # IJMetadata tag (holds 'Info')
_DESCRIPTION = 270


def _colors(meta: OutputMeta, n: int) -> list[str]:
    from ..data.stack import COLOR_HEX, DEFAULT_CHANNEL_COLORS

    colors = list(meta.channel_colors or [])
    if len(colors) != n:
        colors = [DEFAULT_CHANNEL_COLORS[c % len(DEFAULT_CHANNEL_COLORS)] for c in range(n)]
    return [COLOR_HEX.get(c, "FFFFFF") for c in colors]


def _names(meta: OutputMeta, n: int) -> list[str]:
    names = list(meta.channel_names or [])
    return names if len(names) == n else [f"C{c}" for c in range(n)]


def _lut(hexcolor: str) -> np.ndarray:
    """An ImageJ LUT (3, 256) uint8 from black to ``hexcolor`` (RRGGBB)."""
    ramp = np.arange(256, dtype=np.float64) / 255.0
    rgb = [int(hexcolor[i : i + 2], 16) for i in (0, 2, 4)]
    return np.stack([np.round(ramp * v) for v in rgb]).astype(np.uint8)


def _ome_color(hexcolor: str) -> int:
    """OME's Color: RGBA as a signed 32-bit integer."""
    v = (int(hexcolor, 16) << 8) | 0xFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _imagej_kwargs(meta: OutputMeta, enc: Encoder, shape: tuple[int, ...]) -> dict[str, Any]:
    vz, vy, vx = meta.voxel_size
    _, oz, oy, ox = meta.origin
    md: dict[str, Any] = {
        "axes": "TZCYX" if len(shape) == 5 else "TZYX",
        "spacing": vz,
        "unit": "um",
        "finterval": meta.frame_interval,
        "tunit": "sec",
    }
    if any(meta.origin[1:]):
        md.update({"xorigin": -ox / vx, "yorigin": -oy / vy, "zorigin": -oz / vz})
    lo, hi = (float(v) for v in meta.intensity_range)
    if enc.mapping == "linear":
        # ImageJ calibration function 0 (straight line): shown value = c0 + c1 * stored.
        md.update({"cf": 0, "c0": enc.offset, "c1": enc.scale, "vunit": "raw"})
        lo, hi = 0.0, 65535.0
    if hi > lo:
        md.update({"min": lo, "max": hi})
    if len(shape) == 5:  # TZCYX: a composite hyperstack, one LUT and one label per channel
        t, z, c = shape[:3]
        names = _names(meta, c)
        md.update({"mode": "composite", "LUTs": [_lut(h) for h in _colors(meta, c)]})
        md["Labels"] = names * (t * z)
        if hi > lo:
            md["Ranges"] = [lo, hi] * c
    md["Info"] = provenance_json(meta, enc, final=False, indent=1)
    return {"imagej": True, "resolution": (1.0 / vx, 1.0 / vy), "metadata": md}


def _ome_kwargs(meta: OutputMeta, enc: Encoder, shape: tuple[int, ...]) -> dict[str, Any]:
    vz, vy, vx = meta.voxel_size
    md: dict[str, Any] = {
        "axes": "TCZYX" if len(shape) == 5 else "TZYX",
        "Name": meta.name,
        "Description": provenance_json(meta, enc, final=False),
        "PhysicalSizeX": vx,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": vy,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": vz,
        "PhysicalSizeZUnit": "µm",
        "TimeIncrement": meta.frame_interval,
        "TimeIncrementUnit": "s",
    }
    if len(shape) == 5:
        n = int(shape[1])
        md["Channel"] = {
            "Name": _names(meta, n),
            "Color": [_ome_color(h) for h in _colors(meta, n)],
        }
    return {
        "ome": True,
        "bigtiff": True,
        "resolution": (1e4 / vx, 1e4 / vy),
        "resolutionunit": "CENTIMETER",
        "metadata": md,
    }


def create_tiff(
    path: Path, shape: tuple[int, ...], meta: OutputMeta, enc: Encoder, ome: bool
) -> int:
    """Write the TIFF structure with empty data; return the byte offset of the image data.

    ``shape``: TZYX, or 5D for several channels: TCZYX for OME-TIFF, TZCYX for ImageJ."""
    kwargs = _ome_kwargs(meta, enc, shape) if ome else _imagej_kwargs(meta, enc, shape)
    result = tifffile.imwrite(
        path,
        shape=shape,
        dtype=enc.dtype,
        photometric="minisblack",
        software="napari-spatimeinr",
        returnoffset=True,
        **kwargs,
    )
    if not result:
        raise SpatimeINRError(f"Could not lay out {path.name} as a contiguous TIFF.")
    # tifffile lays the image data of an uncompressed, untiled series out contiguously (as for
    # tifffile.memmap); the offset is that of the first plane.
    offset, _ = result
    return int(offset)


def finish_tiff(path: Path, enc: Encoder) -> None:
    """Fill the clip counts into the header text (ImageJ Info or OME description)."""
    if enc.dtype == "float32":
        return
    with tifffile.TiffFile(path) as tif:
        regions = []
        for code in (_IMAGEJ_INFO, _DESCRIPTION):
            tag = tif.pages.first.tags.get(code)
            if tag is not None:
                regions.append((int(tag.valueoffset), int(tag.valuebytecount)))
    with open(path, "r+b") as fh:
        for start, length in regions:
            patch_tokens(fh, start, length, enc)
        fh.flush()
        os.fsync(fh.fileno())
