"""Stack4D: the canonical in-memory form of every input."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..core.errors import SpatimeINRError


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file (or of every file below a directory, in sorted order, e.g. a .zarr)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        if p.is_dir():
            h.update(str(q.relative_to(p)).encode())
        with open(q, "rb") as fh:
            while chunk := fh.read(block):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class Stack4D:
    """A 4D fluorescence stack in canonical axis order T, Z, Y, X.

    Attributes:
        data: float32 array of shape (T, Z, Y, X), raw intensities (not normalized).
        voxel_size: (z, y, x) in µm.
        frame_interval: seconds between frames.
        source_axes: the axis order of the source before canonicalization (e.g. "ZYX").
        name: a short name for layers and file names (the file stem).
        source_path: where it was read from ("" for in-memory data).
        source_sha256: SHA-256 of the source file ("" for in-memory data).
        origin: (t, z, y, x) physical position of element [0,0,0,0] (s, µm, µm, µm).
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    frame_interval: float = 1.0
    source_axes: str = "TZYX"
    name: str = "stack"
    source_path: str = ""
    source_sha256: str = ""
    origin: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.asarray(self.data)
        if a.ndim != 4:
            raise SpatimeINRError(
                f"A Stack4D needs 4 axes (T, Z, Y, X), got an array of shape {a.shape}."
            )
        if a.dtype != np.float32:
            a = a.astype(np.float32)
        self.data = a
        self.voxel_size = tuple(float(v) for v in self.voxel_size)  # type: ignore[assignment]
        self.frame_interval = float(self.frame_interval)

    @classmethod
    def mapped(cls, data: np.ndarray, **kwargs) -> Stack4D:
        """A stack over a memory-mapped file's values in their own dtype (TZYX, read-only), not
        copied to float32: for writing a model directory, which reads it a block at a time
        (``read_stack(..., mapped=True)``). ``data.dtype`` is then the file's."""
        stack = cls(np.zeros((1, 1, 1, 1), np.float32), **kwargs)
        stack.data = data
        return stack

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def scale_tzyx(self) -> tuple[float, float, float, float]:
        """Physical spacing per axis (s, µm, µm, µm), as napari's ``scale``."""
        return (self.frame_interval, *self.voxel_size)

    def validate(self) -> Stack4D:
        """Refuse data no method can use, with one message naming the problem and the fix."""
        d = self.data
        if d.size == 0:
            raise SpatimeINRError(f"The stack {self.name!r} is empty (shape {d.shape}).")
        # a few frames at a time: no voxel-sized mask of a big stack
        step = max(1, (1 << 24) // max(1, int(np.prod(d.shape[1:]))))
        n_bad = sum(
            int(np.count_nonzero(~np.isfinite(d[t : t + step]))) for t in range(0, d.shape[0], step)
        )
        if n_bad:
            raise SpatimeINRError(
                f"The stack {self.name!r} has {n_bad} NaN/Inf values: replace them (e.g. with the "
                "background level) before training."
            )
        if float(d.max()) == float(d.min()):
            raise SpatimeINRError(
                f"The stack {self.name!r} is constant (every value is {float(d.min()):g}): there is "
                "nothing to model. Check the channel and the file."
            )
        return self

    def with_data(self, data: np.ndarray, **changes) -> Stack4D:
        return replace(self, data=data, **changes)

    @classmethod
    def from_array(
        cls,
        data: np.ndarray,
        axes: str = "TZYX",
        voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
        frame_interval: float = 1.0,
        name: str = "stack",
    ) -> Stack4D:
        """Wrap an in-memory array given in ``axes`` order (no channel axis)."""
        from .axes import to_tzyx

        return cls(
            to_tzyx(np.asarray(data), axes),
            voxel_size=voxel_size,
            frame_interval=frame_interval,
            source_axes=axes.upper(),
            name=name,
        )
