"""Writing results to files: a lazy render (through the limits gate) and a model's motion."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da

from ..io.encode import Encoder
from ..io.meta import OutputMeta
from ..io.slabs import workers
from ..limits import RenderCost, check_export
from ..store.model_dir import ModelDir


def export(
    darr: da.Array,
    path: str | Path,
    meta: OutputMeta,
    dtype: str = "float32",
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    force: bool = False,
) -> Path:
    """Write a lazy TZYX array chunk by chunk; the format follows the suffix of ``path``.

    A TCZYX array (a multi-channel render, ``meta.channel_names`` one per channel) keeps its
    channel axis: ImageJ hyperstack TZCYX, OME-TIFF TCZYX, OME-Zarr with a ``c`` axis; NIfTI is
    refused (one line).

    Refused before any work when it cannot fit (see :mod:`napari_spatimeinr.limits`);
    ``force=True`` skips the free-disk check only.
    """
    from ..io.write import _as_dask, write_array

    darr = _as_dask(darr)
    _check_limits(darr, Path(path), Encoder.for_output(dtype, meta).dtype, force)
    return write_array(
        darr,
        path,
        meta,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
        force=force,
    )


def motion(model_dir: str | Path | ModelDir, device: str = "auto"):
    """The velocity field a motion model recovered (:class:`.velocity.VelocityField`).

    ``motion(m).interval(t)`` is the velocity between frames ``t`` and ``t+1`` at frame ``t``'s
    voxels, (3, Z, Y, X) float32, components (vz, vy, vx) in µm/s. A model without motion (the
    classical methods, the ``paper`` preset) is refused with a message saying so.
    """
    from ..engines.fast.velocity import VelocityField

    return VelocityField(model_dir, device)


def export_motion(
    model_dir: Any,
    path: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    device: str = "auto",
    force: bool = False,
) -> Path:
    """Write the velocity field (TCZYX, µm/s) of a model directory (or of an open
    :func:`motion` field) to an OME-TIFF (.ome.tif, .tif) or OME-Zarr file.

    See :func:`napari_spatimeinr.engines.fast.velocity.export_motion`.
    """
    from ..engines.fast.velocity import export_motion as _export

    return _export(
        model_dir,
        path,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
        device=device,
        force=force,
    )


def _check_limits(darr: da.Array, path: Path, dtype: str, force: bool) -> None:
    """The gate of :mod:`napari_spatimeinr.limits` for this array's shape and chunking (a TCZYX
    array counts as its channels' planes one after another in z)."""
    shape = tuple(int(s) for s in darr.shape)
    chunk = tuple(max(int(c) for c in cs) for cs in darr.chunks)
    if len(shape) == 5:
        t, c, z, y, x = shape
        shape = (t, c * z, y, x)
        chunk = (chunk[0], chunk[1] * chunk[2], chunk[3], chunk[4])
    cost = RenderCost(shape, shape, chunk, math.prod(darr.numblocks), workers())  # type: ignore[arg-type]
    check_export(cost, path, dtype, force=force)
