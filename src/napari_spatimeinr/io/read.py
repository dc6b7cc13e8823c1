"""Read a 4D stack from disk as a canonical :class:`~napari_spatimeinr.data.Stack4D`.

Formats (by suffix): ImageJ hyperstack TIFF, OME-TIFF, plain TIFF, NIfTI (.nii, .nii.gz; axes
x, y, z, t), OME-Zarr (.zarr; highest resolution level), NumPy .npy, and through bioio (the optional
``formats`` extra, :mod:`.read_bioio`) Zeiss .czi, Nikon .nd2 and Leica .lif. The overrides (``axes``,
``channel``, ``voxel_size``, ``frame_interval``) win over what the file says; what neither says
defaults to 1 µm and 1 s (listed in ``stack.extra["defaults"]``). Axes of files without axis
metadata follow the rule of :mod:`napari_spatimeinr.data.axes`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..core.errors import SpatimeINRError
from ..data.axes import check_axes, infer_axes, select_channel
from ..data.stack import ChannelStack, Stack4D, sha256_file
from .formats import SUPPORTED_READ_SUFFIXES, read_family, stem_of
from .source import SourceImage

__all__ = ["SUPPORTED_READ_SUFFIXES", "read_channels", "read_source", "read_stack"]


#: Which readers to use: ``auto`` (by suffix) or ``bioio`` (OME-TIFF and OME-Zarr too).
#: Formats bioio does not read here (ImageJ/plain TIFF, NIfTI, .npy) keep their readers either way.
READERS = ("auto", "bioio")

#: Environment variable that sets the reader where none is given (the CLI, napari).
READER_ENV = "SPATIMEINR_READER"


def _reader_choice(reader: str | None) -> str:
    choice = (reader or os.environ.get(READER_ENV) or "auto").strip().lower()
    if choice not in READERS:
        where = f"{READER_ENV}={choice}" if reader is None else f"reader={reader!r}"
        raise SpatimeINRError(f"Unknown reader ({where}): choose auto or bioio.")
    return choice


def read_source(path: str | Path, reader: str | None = None) -> SourceImage:
    """The image and metadata of a file as stored (file axis order, nothing loaded yet).

    ``reader``: ``auto`` (by suffix: vendor files through bioio, the rest through this package's
    readers) or ``bioio`` (``.ome.tif(f)``, ``.zarr`` and ``.ome.zarr`` through bioio too); None
    takes ``$SPATIMEINR_READER``, else ``auto``.
    """
    p = Path(path)
    choice = _reader_choice(reader)
    if not p.exists():
        raise SpatimeINRError(f"No such file: {p}. Check the path (and the current folder).")
    family = read_family(p)
    if family == "bioio" or choice == "bioio" and family in ("ome-tiff", "zarr"):
        from .read_bioio import read_bioio

        return read_bioio(p)
    if family in ("tiff", "ome-tiff"):
        if not p.is_file():
            raise SpatimeINRError(f"{p} is a folder, not a TIFF file: give the file's path.")
        from .read_tiff import read_tiff

        return read_tiff(p)
    if family == "nifti":
        from .read_nifti import read_nifti

        return read_nifti(p)
    if family == "zarr":
        from .read_zarr import read_zarr

        return read_zarr(p)
    return _read_npy(p)


def _read_npy(path: Path) -> SourceImage:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise SpatimeINRError(
            f"Cannot read {path.name} as a NumPy array ({exc}): save it with numpy.save."
        ) from None
    return SourceImage(data=data, source_dtype=str(data.dtype), metadata="npy")


def read_stack(
    path: str | Path,
    axes: str | None = None,
    channel: int | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    frame_interval: float | None = None,
    *,
    validate: bool = True,
    reader: str | None = None,
    mapped: bool = False,
) -> Stack4D:
    """Read ``path`` as a TZYX float32 :class:`Stack4D` in raw intensity units.

    ``mapped=True`` (training, which copies the stack into its model directory a block at a
    time): an uncompressed file stored in TZYX order stays memory-mapped in its own dtype
    (:meth:`Stack4D.mapped`), so reading a stack of any size costs no memory of its own; other
    files are read as usual.

    Args:
        path: the file (or .zarr folder).
        axes: the file's axis order (e.g. ``TZYX``, ``ZYX``, ``TYX``, ``TCZYX``), overriding its
            metadata. 3D input without T is one frame; input without Z is one slice.
        channel: the channel to use when the image has a channel axis (RGB samples count as one).
        voxel_size: (z, y, x) in µm, overriding the file.
        frame_interval: seconds between frames, overriding the file.
        validate: refuse NaN/Inf and constant stacks (:meth:`Stack4D.validate`).
        reader: ``auto`` or ``bioio`` (see :func:`read_source`).

    ``stack.extra`` records ``source_dtype`` (e.g. ``"uint16"``), ``metadata`` (what was read),
    ``defaults`` (values not given by file or overrides), ``notes``, ``provenance`` (for files
    written by this package) and, when the file names its channels, ``channel_names``.
    """
    voxel_size, frame_interval = _check_overrides(voxel_size, frame_interval)
    p = Path(path)
    src = read_source(p, reader)
    try:
        data, file_axes = _canonical(src, axes, channel, p.name, mapped)
    finally:
        if src.close is not None:
            src.close()
    return _stack_of(src, data, file_axes, p, voxel_size, frame_interval, validate)


def read_channels(
    path: str | Path,
    axes: str | None = None,
    channel: int | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    frame_interval: float | None = None,
    *,
    validate: bool = True,
    reader: str | None = None,
    mapped: bool = False,
) -> Stack4D | ChannelStack:
    """Read ``path`` with all of its channels: a :class:`ChannelStack` when the file has two or
    more channels and ``channel`` is None, else what :func:`read_stack` reads (one channel).

    The channels keep the file's names (``ChannelStack.names``; ``C0``, ``C1``, … when it gives
    none, or the names a file written by this package recorded).
    """
    voxel_size, frame_interval = _check_overrides(voxel_size, frame_interval)
    p = Path(path)
    src = read_source(p, reader)
    try:
        file_axes = _axes_of(src, axes, p.name)
        n = _channels(src.shape, file_axes) if len(file_axes) == len(src.shape) else 1
        if channel is not None or n < 2:  # one channel: as read_stack (``mapped`` too)
            data, file_axes = _canonical(src, axes, channel, p.name, mapped)
            return _stack_of(src, data, file_axes, p, voxel_size, frame_interval, validate)
        chans = []
        sha = sha256_file(p)
        for c in range(n):
            data, fa = _canonical(src, axes, c, p.name)
            stack = _stack_of(src, data, fa, p, voxel_size, frame_interval, validate, sha)
            stack.extra["channel"] = c
            chans.append(stack)
    finally:
        if src.close is not None:
            src.close()
    names = src.channel_names or (src.provenance or {}).get("channel_names")
    return ChannelStack(chans, list(names) if names and len(names) == n else [])


def _axes_of(src: SourceImage, axes: str | None, name: str) -> str:
    """The file's axes as :func:`_canonical` will read them (without loading anything)."""
    if axes is not None:
        _, shape = _fit_singletons(src.data, src.shape, axes.upper(), src.axes)
        return axes.upper() if len(axes) == len(shape) else ""
    if src.axes is not None:
        return src.axes
    if src.axes_error is not None:
        raise SpatimeINRError(src.axes_error)
    try:
        return infer_axes(len(src.shape))
    except SpatimeINRError:
        return ""


def _stack_of(
    src: SourceImage,
    data: np.ndarray,
    file_axes: str,
    p: Path,
    voxel_size: tuple[float, float, float] | None,
    frame_interval: float | None,
    validate: bool,
    sha: str | None = None,
) -> Stack4D:
    """The :class:`Stack4D` of one channel's canonical data and the file's metadata."""
    if src.value_scale is not None:
        slope, inter = src.value_scale
        data *= np.float32(slope)
        data += np.float32(inter)
    defaults: list[str] = []
    if voxel_size is None:
        if not {"Z", "Y", "X"} <= src.spacing.keys():
            defaults.append("voxel_size")
        voxel_size = tuple(src.spacing.get(a, 1.0) for a in "ZYX")  # type: ignore[assignment]
    if frame_interval is None:
        if "T" not in src.spacing:
            defaults.append("frame_interval")
        frame_interval = src.spacing.get("T", 1.0)
    origin = tuple(float(src.origin.get(a, 0.0)) for a in "TZYX")
    make = Stack4D.mapped if isinstance(data, np.memmap) else Stack4D
    stack = make(
        data,
        voxel_size=voxel_size,  # type: ignore[arg-type]
        frame_interval=frame_interval,
        source_axes=file_axes,
        name=stem_of(p),
        source_path=str(p.resolve()),
        source_sha256=sha or sha256_file(p),
        origin=origin,  # type: ignore[arg-type]
        extra={
            "source_dtype": src.source_dtype,
            "metadata": src.metadata,
            "defaults": defaults,
            "notes": list(src.notes),
            "provenance": src.provenance,
            "channels": _channels(src.shape, file_axes),
            **_names(src.channel_names, _channels(src.shape, file_axes)),
        },
    )
    if validate:
        stack.validate()
    return stack


def _check_overrides(
    voxel_size: tuple[float, float, float] | None, frame_interval: float | None
) -> tuple[tuple[float, float, float] | None, float | None]:
    if voxel_size is not None:
        vs = tuple(float(v) for v in voxel_size)
        if len(vs) != 3 or not all(math.isfinite(v) and v > 0 for v in vs):
            raise SpatimeINRError(
                f"Voxel size {voxel_size} is not usable: give three positive numbers z y x in µm "
                "(e.g. --voxel-size 1.0 0.2 0.2)."
            )
        voxel_size = vs  # type: ignore[assignment]
    if frame_interval is not None:
        fi = float(frame_interval)
        if not (math.isfinite(fi) and fi > 0):
            raise SpatimeINRError(
                f"Frame interval {frame_interval} is not usable: give a positive number of "
                "seconds (e.g. --frame-interval 30)."
            )
        frame_interval = fi
    return voxel_size, frame_interval  # type: ignore[return-value]


def _names(names: list[str] | None, channels: int) -> dict[str, list[str]]:
    """``{"channel_names": names}`` when the file names each of its channels, else nothing."""
    return {"channel_names": list(names)} if names and len(names) == channels else {}


def _channels(shape: tuple[int, ...], axes: str) -> int:
    """The number of channels of the file (1 without a channel axis)."""
    if "C" in axes and len(axes) == len(shape):
        return int(shape[axes.index("C")])
    return 1


def _canonical(
    src: SourceImage, axes: str | None, channel: int | None, name: str, mapped: bool = False
) -> tuple[np.ndarray, str]:
    """The data as a C-contiguous TZYX float32 array, and the axes it was read with.

    ``mapped``: a memory-mapped file whose values are already C-ordered TZYX is returned as it
    is (its own dtype, read-only, nothing loaded); anything else as the float32 copy."""
    data = src.data
    shape = src.shape
    if axes is not None:
        axes = axes.upper()
        data, shape = _fit_singletons(data, shape, axes, src.axes)
    elif src.axes is not None:
        axes = src.axes
    elif src.axes_error is not None:
        raise SpatimeINRError(src.axes_error)
    else:
        try:
            axes = infer_axes(len(shape))
        except SpatimeINRError:
            raise SpatimeINRError(
                f"Cannot use {name}: it has {len(shape)} dimensions (shape {shape}) but 2 to 5 "
                "are expected (T, C, Z, Y, X). Give --axes if some of them are something else, "
                "or save one 2D-5D image per file."
            ) from None
    axes = check_axes(axes, len(shape))
    data, rest = select_channel(data, axes, channel)
    kind = np.dtype(getattr(data, "dtype", np.float32)).kind
    if kind not in "biuf":
        raise SpatimeINRError(
            f"Cannot use {name}: its values are of type {data.dtype}, not numbers of intensity "
            "(integer or floating point). Save the image as integers or floats."
        )
    from ..core.resources import check_read

    check_read(tuple(int(s) for s in data.shape), name)  # before the float32 copy exists
    if not hasattr(data, "compute"):
        data = np.asanyarray(data)
    for a in "TZ":
        if a not in rest:
            data = data[np.newaxis]
            rest = a + rest
    data = data.transpose([rest.index(a) for a in "TZYX"])
    if (
        mapped
        and isinstance(data, np.memmap)
        and data.flags.c_contiguous
        and data.dtype.kind in "iuf"
        and src.value_scale is None
    ):
        return data, axes
    try:
        if hasattr(data, "compute"):
            data = data.astype(np.float32).compute()
        out = np.ascontiguousarray(data, dtype=np.float32)
    except (SpatimeINRError, MemoryError):
        raise
    except Exception as exc:  # a decoder or file error while the data is read
        raise SpatimeINRError(
            f"Cannot read the image data of {name} ({type(exc).__name__}: {exc}): the file is "
            "probably incomplete or damaged; copy or save it again."
        ) from None
    if not out.flags.writeable or np.shares_memory(out, data) and not out.flags.owndata:
        out = out.copy()  # never hand out a view of a memory-mapped file
    return out, axes


def _fit_singletons(
    data: object, shape: tuple[int, ...], axes: str, file_axes: str | None
) -> tuple[object, tuple[int, ...]]:
    """Let ``--axes`` name length-1 axes that the file's metadata left out, or leave out ones it
    has (e.g. ``--axes TZYX`` for a file read as TYX with Z=1)."""
    if len(axes) == len(shape):
        return data, shape
    if len(axes) > len(shape) and file_axes and set(file_axes) <= set(axes):
        if "".join(a for a in axes if a in file_axes) == file_axes:
            new = tuple(shape[file_axes.index(a)] if a in file_axes else 1 for a in axes)
            return data.reshape(new), new  # type: ignore[attr-defined]
    if len(axes) < len(shape):
        kept = tuple(s for s in shape if s != 1)
        if len(kept) == len(axes):
            return data.reshape(kept), kept  # type: ignore[attr-defined]
    return data, shape
