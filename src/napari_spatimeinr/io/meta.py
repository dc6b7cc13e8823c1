"""Metadata that travels with an output array to the writers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OutputMeta:
    """Physical metadata and provenance of an output (TZYX) array.

    Attributes:
        voxel_size: (z, y, x) in µm: the input's voxel size × N_in/N_out per axis.
        frame_interval: seconds between output frames: the input's × (T_in-1)/(T_out-1).
        origin: physical position (t in s; z, y, x in µm) of the output's first sample, relative to
            the input's first voxel centre / first frame (non-zero for --t-range/--roi renders).
        name: a short name (layer name, file stem).
        provenance: package version, method, preset, seed, factors, source file name and SHA-256.
        intensity_range: (min, max) of the input in raw units (for uint16 output).
        source_dtype: dtype of the input file's data (e.g. "uint16").
        channel_names: one name per channel of a TCZYX output (a multi-channel render), else None.
        channel_colors: one colour per channel (napari colormap names, e.g. ``green``), or None.
    """

    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    frame_interval: float = 1.0
    origin: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    name: str = "output"
    provenance: dict[str, Any] = field(default_factory=dict)
    intensity_range: tuple[float, float] = (0.0, 1.0)
    source_dtype: str = "float32"
    channel_names: tuple[str, ...] | None = None
    channel_colors: tuple[str, ...] | None = None

    @property
    def scale_tzyx(self) -> tuple[float, float, float, float]:
        return (self.frame_interval, *self.voxel_size)
