"""What a format reader hands to :func:`~napari_spatimeinr.io.read.read_stack`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Key under which our writers store provenance (ImageJ Info, OME Description, NIfTI extension,
#: Zarr attributes). Its presence marks a file written by this package.
PROVENANCE_KEY = "spatimeinr"


@dataclass
class SourceImage:
    """An image as found in a file, before axes are canonicalized.

    Attributes:
        data: array-like in file axis order (numpy array, memmap or dask array; never copied here).
        axes: the file's axes in TCZYX letters, or None when the file does not say.
        spacing: physical spacing per axis letter that the file states: µm for Z/Y/X, s for T.
        origin: physical position of the first element per axis letter (µm, s) when stated.
        source_dtype: dtype of the stored values (e.g. "uint16").
        value_scale: (slope, intercept) the stored values must be mapped through to get intensities
            (ImageJ calibration, our own uint16 mapping), or None.
        provenance: the provenance dict a file written by this package carries, else None.
        metadata: which metadata was used (e.g. "imagej", "ome", "nifti"), for messages.
        notes: what was assumed, for the user (e.g. "unit 'pixel': voxel size taken as µm").
        axes_error: why the file's axes could not be used (raised unless --axes is given).
        close: releases what ``data`` still reads from (an open file), once it is loaded.
        channel_names: the names of the channels, in order, when the file gives them.
    """

    data: Any
    axes: str | None = None
    spacing: dict[str, float] = field(default_factory=dict)
    origin: dict[str, float] = field(default_factory=dict)
    source_dtype: str = "float32"
    value_scale: tuple[float, float] | None = None
    provenance: dict[str, Any] | None = None
    metadata: str = "none"
    notes: list[str] = field(default_factory=list)
    axes_error: str | None = None
    close: Callable[[], None] | None = None
    channel_names: list[str] | None = None

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)


def parse_provenance(text: str | bytes | None) -> dict[str, Any] | None:
    """The provenance dict from a JSON text written by our writers, else None."""
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip().rstrip("\x00")
    if not text.startswith("{"):
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if isinstance(d, dict) and isinstance(d.get(PROVENANCE_KEY), dict):
        return d[PROVENANCE_KEY]
    return None


def apply_provenance(src: SourceImage, prov: dict[str, Any] | None) -> None:
    """Take what our own provenance records (origin, uint16 mapping) into ``src``."""
    if not prov:
        return
    src.provenance = prov
    origin = prov.get("origin")
    if isinstance(origin, dict):
        for key, letter in (("t_s", "T"), ("z_um", "Z"), ("y_um", "Y"), ("x_um", "X")):
            if key in origin:
                src.origin[letter] = float(origin[key])
    mapping = (prov.get("uint16") or {}).get("mapping")
    if mapping == "linear" and src.value_scale is None:
        src.value_scale = (float(prov["uint16"]["scale"]), float(prov["uint16"]["offset"]))
    if mapping == "linear":
        src.source_dtype = "float32"
