"""Writers of a velocity field (TCZYX float32, µm/s): OME-TIFF and OME-Zarr, interval by interval.

The layout is that of :mod:`napari_spatimeinr.engines.fast.velocity` (DESIGN.md, "Motion file"): axes TCZYX,
T = the T−1 intervals between frames, C = (vz, vy, vx) in µm/s.

* ``.ome.tif``/``.ome.tiff`` and ``.tif``/``.tiff``: OME-TIFF (DimensionOrder XYZCT, which is TCZYX
  in array order; channels named vz, vy, vx; PhysicalSize X/Y/Z in µm, TimeIncrement in s;
  provenance as the image Description). An ImageJ hyperstack cannot hold this axis order (ImageJ
  stores TZCYX), so ``.tif`` is OME-TIFF too; Fiji opens it with Bio-Formats. BigTIFF when the
  file may pass 4 GB.
* ``.zarr``/``.ome.zarr``: OME-Zarr (NGFF 0.5, Zarr v3) with axes t (second), c (channel),
  z, y, x (micrometer), the scale and translation transformations, channel labels in ``omero``,
  provenance in the group attributes; chunks of one interval and component, whole y-x planes
  (about 8 MB).

As every output of the package, the file is written under a temporary name in its folder and
renamed when complete; an error or cancel removes the temporary file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.chunks import auto_chunks
from ..core.errors import SpatimeINRError
from .formats import suffix_of
from .slabs import check_cancel
from .source import PROVENANCE_KEY
from .write import _commit, _remove, _temp_path, check_target

#: suffixes a velocity field can be written to
VELOCITY_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".zarr", ".ome.zarr")
_TIFF_LIMIT = 2**32 - 2**25  # classic TIFF offsets; BigTIFF beyond (with a margin for headers)

#: target size of an OME-Zarr chunk (whole y-x planes, split along y for very large planes)
CHUNK_MB = 8.0

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


def velocity_family(path: str | Path) -> str:
    """``tiff`` or ``zarr`` for a velocity file name; anything else is refused with the choices."""
    suffix = suffix_of(path)
    if suffix not in VELOCITY_SUFFIXES:
        raise SpatimeINRError(
            f"Cannot write the motion file {Path(path).name!r}: unknown output type "
            f"{suffix or '(none)'!r}. Choose a name ending in .ome.tif, .tif or .ome.zarr."
        )
    return "zarr" if "zarr" in suffix else "tiff"


def velocity_bytes(shape: tuple[int, ...]) -> int:
    """Size on disk of a float32 velocity file of ``shape`` (TCZYX; an upper bound)."""
    planes = math.prod(shape[:-2])
    return math.prod(shape) * 4 + planes * 512 + 64 * 2**10


def write_velocity(
    path: str | Path,
    shape: tuple[int, int, int, int, int],
    interval: Callable[[int], np.ndarray],
    meta: dict[str, Any],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Write a TCZYX field whose entry ``t`` is ``interval(t)`` (3, Z, Y, X) float32.

    ``meta``: the provenance (:meth:`napari_spatimeinr.engines.fast.velocity.VelocityField.meta`), which also
    gives the voxel size, frame interval and origin. ``progress(done, total)`` after each
    interval; ``cancel()`` polled between intervals (then
    :class:`~napari_spatimeinr.core.errors.StopRequested` and no file).
    """
    path = Path(path)
    fam = velocity_family(path)
    check_target(path, overwrite)
    tmp = _temp_path(path)
    try:
        if fam == "zarr":
            _write_zarr(tmp, shape, interval, meta, progress, cancel)
        else:
            _write_tiff(tmp, shape, interval, meta, progress, cancel)
        _commit(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def _geometry(meta: dict[str, Any]) -> tuple[tuple[float, float, float], float, list[float]]:
    vs = meta["voxel_size_um"]
    o = meta["origin"]
    return (
        (float(vs["z"]), float(vs["y"]), float(vs["x"])),
        float(meta["frame_interval_s"]),
        [float(o["t_s"]), 0.0, float(o["z_um"]), float(o["y_um"]), float(o["x_um"])],
    )


def _intervals(
    shape: tuple[int, ...],
    interval: Callable[[int], np.ndarray],
    progress: Progress | None,
    cancel: Cancel | None,
) -> Iterator[tuple[int, np.ndarray]]:
    n = int(shape[0])
    if progress is not None:
        progress(0, n)
    for t in range(n):
        check_cancel(cancel)
        block = np.ascontiguousarray(interval(t), dtype="<f4")
        if block.shape != tuple(shape[1:]):
            raise SpatimeINRError(
                f"Interval {t} has shape {block.shape}, not {tuple(shape[1:])}."
            )  # pragma: no cover - a programming error
        yield t, block
        if progress is not None:
            progress(t + 1, n)


def _write_tiff(tmp, shape, interval, meta, progress, cancel) -> None:
    import tifffile

    (vz, vy, vx), fi, _ = _geometry(meta)
    md = {
        "axes": "TCZYX",
        "Name": str(meta.get("name", "velocity")),
        "Description": json.dumps({PROVENANCE_KEY: meta}, default=str),
        "PhysicalSizeX": vx,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": vy,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": vz,
        "PhysicalSizeZUnit": "µm",
        "TimeIncrement": fi,
        "TimeIncrementUnit": "s",
        "Channel": {"Name": list(meta.get("channels", ("vz", "vy", "vx")))},
    }

    def planes() -> Iterator[np.ndarray]:
        for _, block in _intervals(shape, interval, progress, cancel):
            yield from block.reshape(-1, *block.shape[-2:])

    tifffile.imwrite(
        tmp,
        planes(),
        shape=tuple(shape),
        dtype="float32",
        photometric="minisblack",
        software="napari-spatimeinr",
        ome=True,
        bigtiff=velocity_bytes(shape) > _TIFF_LIMIT,
        resolution=(1e4 / vx, 1e4 / vy),
        resolutionunit="CENTIMETER",
        metadata=md,
    )


def _write_zarr(tmp, shape, interval, meta, progress, cancel) -> None:
    import warnings

    import zarr

    with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    (vz, vy, vx), fi, origin = _geometry(meta)
    axes = [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    arr = group.create_array(
        "0",
        shape=tuple(shape),
        chunks=(1, 1, *auto_chunks(tuple(shape[1:]), CHUNK_MB)[1:]),
        dtype="float32",
        fill_value=0.0,
        dimension_names=[a["name"] for a in axes],
    )
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [fi, 1.0, vz, vy, vx]}]
    if any(origin):
        transforms.append({"type": "translation", "translation": origin})
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": transforms}],
        axes=axes,
        name=str(meta.get("name", "velocity")),
    )
    group.attrs[PROVENANCE_KEY] = meta
    lo = np.full(shape[1], np.inf)
    hi = np.full(shape[1], -np.inf)
    for t, block in _intervals(shape, interval, progress, cancel):
        arr[t] = block
        flat = block.reshape(block.shape[0], -1)
        lo, hi = np.minimum(lo, flat.min(1)), np.maximum(hi, flat.max(1))
    channels = list(meta.get("channels", ("vz", "vy", "vx")))
    ome = dict(group.attrs.get("ome", {}))
    bound = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1e-9)
    ome["omero"] = {  # channel names; display ranges symmetric around 0 (signed speeds)
        "channels": [
            {
                "label": c,
                "active": True,
                "color": "FFFFFF",
                "window": {"min": float(a), "max": float(b), "start": -float(m), "end": float(m)},
            }
            for c, a, b, m in zip(channels, lo, hi, bound, strict=True)
        ]
    }
    group.attrs["ome"] = ome
