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


#: display colours of channels without colours of their own (napari colormap names; hex for files)
DEFAULT_CHANNEL_COLORS = ("green", "magenta", "cyan", "yellow", "red", "blue")
COLOR_HEX = {
    "green": "00FF00",
    "magenta": "FF00FF",
    "cyan": "00FFFF",
    "yellow": "FFFF00",
    "red": "FF0000",
    "blue": "0000FF",
    "gray": "FFFFFF",
}


def channel_names_of(n: int, names: list[str] | None = None) -> list[str]:
    """``names`` when there is one per channel (made unique), else ``C0``, ``C1``, …"""
    if not names or len(names) != n:
        return [f"C{c}" for c in range(n)]
    out: list[str] = []
    for c, name in enumerate(names):
        name = str(name).strip() or f"C{c}"
        out.append(name if name not in out else f"{name}_{c}")
    return out


@dataclass
class ChannelStack:
    """The channels of one acquisition (a TCZYX image): one :class:`Stack4D` per channel, on one
    grid (same shape, voxel size, frame interval, origin). A model of it is trained with one motion
    for all channels (:func:`napari_spatimeinr.workflows.train.train`).

    Attributes:
        channels: the channels, in order (each a canonical TZYX Stack4D in raw units).
        names: one name per channel (``C0``, ``C1``, … when the file names none).
        colors: one napari colormap name per channel.
    """

    channels: list[Stack4D]
    names: list[str] = field(default_factory=list)
    colors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.channels) < 2:
            raise SpatimeINRError("A multi-channel stack needs at least two channels.")
        first = self.channels[0]
        for c, ch in enumerate(self.channels[1:], start=1):
            if ch.shape != first.shape:
                raise SpatimeINRError(
                    f"The channels of one stack must have one shape: channel 0 is {first.shape}, "
                    f"channel {c} is {ch.shape}."
                )
        self.names = channel_names_of(len(self.channels), self.names)
        if len(self.colors) != len(self.channels):
            self.colors = [
                DEFAULT_CHANNEL_COLORS[c % len(DEFAULT_CHANNEL_COLORS)]
                for c in range(len(self.channels))
            ]

    @property
    def n(self) -> int:
        return len(self.channels)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The TZYX shape of each channel."""
        return self.channels[0].shape

    @property
    def name(self) -> str:
        return self.channels[0].name

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return self.channels[0].voxel_size

    @property
    def frame_interval(self) -> float:
        return self.channels[0].frame_interval

    @property
    def extra(self) -> dict:
        return self.channels[0].extra

    @property
    def source_path(self) -> str:
        return self.channels[0].source_path

    @property
    def source_sha256(self) -> str:
        return self.channels[0].source_sha256

    def validate(self) -> ChannelStack:
        for ch in self.channels:
            ch.validate()
        return self

    @classmethod
    def from_array(
        cls,
        data: np.ndarray,
        axes: str = "TCZYX",
        voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
        frame_interval: float = 1.0,
        name: str = "stack",
        names: list[str] | None = None,
    ) -> ChannelStack:
        """Wrap an in-memory array with a channel axis ``C`` in ``axes``."""
        axes = axes.upper()
        if "C" not in axes:
            raise SpatimeINRError(f"The axes {axes!r} have no channel axis C.")
        ci = axes.index("C")
        data = np.asarray(data)
        rest = axes.replace("C", "")
        chans = [
            Stack4D.from_array(
                np.take(data, c, axis=ci), rest, voxel_size, frame_interval, name=name
            )
            for c in range(data.shape[ci])
        ]
        for ch in chans:
            ch.extra["channels"] = len(chans)
        return cls(chans, list(names or []))
