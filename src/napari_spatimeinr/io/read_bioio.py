"""Vendor files (Zeiss .czi, Nikon .nd2, Leica .lif) through bioio and its reader plugins.

bioio is optional: ``pip install "napari-spatimeinr[formats]"`` installs it with the plugins
``bioio-czi``, ``bioio-nd2``, ``bioio-lif``, ``bioio-ome-tiff`` and ``bioio-ome-zarr``. Without them
a vendor file is refused in one line that says what to install. OME-TIFF and OME-Zarr keep this
package's own readers unless bioio is asked for (``read_stack(..., reader="bioio")`` or
``SPATIMEINR_READER=bioio``).

What is taken from the file: the first scene (a note names the others), its axes (bioio's TCZYX,
colour samples as the channel axis), the voxel size in µm, the frame interval in s and the channel
names. The plugins do not agree on units, so they are checked here: OME pixel sizes and time
increments are converted from the units the file states (bioio-ome-tiff hands the raw numbers),
units bioio attaches to an axis are honoured, the rest are bioio's micrometres; an interval comes as
bioio's ``timedelta`` (``time_interval``, or ``timelapse_interval`` for LIF).
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SpatimeINRError
from ..data.axes import from_file_axes
from .formats import suffix_of
from .logs import LogCollector, captured_log
from .source import PROVENANCE_KEY, SourceImage, apply_provenance, parse_provenance
from .units import length_factor_um, positive, time_factor_s

#: What a user runs to read vendor files.
FORMATS_INSTALL = 'pip install "napari-spatimeinr[formats]"'

#: The bioio reader plugin (its module) of each suffix read through bioio.
PLUGINS: dict[str, str] = {
    ".czi": "bioio_czi",
    ".nd2": "bioio_nd2",
    ".lif": "bioio_lif",
    ".ome.tif": "bioio_ome_tiff",
    ".ome.tiff": "bioio_ome_tiff",
    ".zarr": "bioio_ome_zarr",
    ".ome.zarr": "bioio_ome_zarr",
}


def missing_extra(path: str | Path, package: str) -> SpatimeINRError:
    """The one-line refusal of a file whose reader is not installed."""
    return SpatimeINRError(
        f"Reading {Path(path).name} needs the optional formats extra ({package} is not "
        f"installed): {FORMATS_INSTALL}"
    )


def _plugin(path: Path) -> tuple[Any, Any, str]:
    """``(bioio, the plugin's Reader class, the plugin's name)`` for ``path``."""
    suffix = suffix_of(path)
    module = PLUGINS.get(suffix)
    if module is None:
        raise SpatimeINRError(
            f"Cannot read {path.name} through bioio: it reads .czi, .nd2, .lif, .ome.tif and "
            f".zarr here, and {suffix or 'a file without suffix'} has its own reader."
        )
    name = module.replace("_", "-")
    try:
        import bioio
    except ImportError:
        raise missing_extra(path, "bioio") from None
    try:
        plugin = importlib.import_module(module)
    except ImportError:
        raise missing_extra(path, name) from None
    return bioio, plugin.Reader, name


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__


def _why(exc: BaseException, log: LogCollector) -> str:
    """The plugin's own reason when bioio logged it (``... error=REASON``), else the exception."""
    for msg in reversed(log.messages):
        if "error=" in msg:
            reason = msg.rsplit("error=", 1)[1].strip().splitlines()
            if reason:
                return reason[0].strip()
    return _first_line(exc)


def read_bioio(path: Path) -> SourceImage:
    """The first scene of ``path`` through its bioio plugin (nothing loaded yet: a dask array)."""
    bioio, reader, plugin = _plugin(path)
    with captured_log("bioio") as log:
        try:
            image = bioio.BioImage(str(path), reader=reader)
            scenes = [str(s) for s in image.scenes]
            order = str(image.dims.order)
            data = image.dask_data
            dtype = str(np.dtype(image.dtype))
        except Exception as exc:  # each plugin raises its own types for broken or foreign files
            raise SpatimeINRError(
                f"Cannot read {path.name} with {plugin} ({_why(exc, log)}): check that the file "
                "is complete and opens in the microscope's software or in Fiji."
            ) from None
        return _source(image, plugin, scenes, order, data, dtype)


def _source(
    image: Any, plugin: str, scenes: list[str], order: str, data: Any, dtype: str
) -> SourceImage:
    """The :class:`SourceImage` of an opened file: axes, notes, spacing, names, provenance."""
    data, order = _samples_as_channels(data, order)
    src = SourceImage(data=data, source_dtype=dtype, metadata=f"bioio ({plugin})")
    try:
        src.axes = from_file_axes(order, src.shape)
    except SpatimeINRError as exc:
        src.axes_error = str(exc)
    if len(scenes) > 1:
        src.notes.append(
            f"the file holds {len(scenes)} scenes ({', '.join(scenes[:4])}"
            f"{', …' if len(scenes) > 4 else ''}): the first, {scenes[0]}, is read"
        )
    ome = _ome_pixels(image, plugin)
    _take_spacing(image, ome, src)
    _take_interval(image, ome, src)
    src.channel_names = _channel_names(image, src)
    apply_provenance(src, _provenance(image, ome))
    return src


def _samples_as_channels(data: Any, order: str) -> tuple[Any, str]:
    """Colour samples (bioio's ``S``) become the channel axis when there is only one channel."""
    if "S" in order and "C" in order and data.shape[order.index("C")] == 1:
        ci = order.index("C")
        index = tuple(0 if i == ci else slice(None) for i in range(len(order)))
        return data[index], order.replace("C", "")
    return data, order


def _ome_pixels(image: Any, plugin: str) -> Any:
    """The OME ``Pixels`` of the scene when the file's own metadata is OME, else None."""
    if plugin != "bioio-ome-tiff":
        return None
    try:
        return image.ome_metadata.images[image.current_scene_index].pixels
    except Exception:
        return None


def _provenance(image: Any, ome: Any) -> dict[str, Any] | None:
    """What our own writers recorded (origin, uint16 mapping): the OME Description of an OME-TIFF,
    the attributes of an OME-Zarr."""
    try:
        if ome is not None:
            return parse_provenance(
                image.ome_metadata.images[image.current_scene_index].description
            )
        attrs = getattr(image.metadata, "attributes", None)
        prov = attrs.get(PROVENANCE_KEY) if isinstance(attrs, dict) else None
        return prov if isinstance(prov, dict) else None
    except Exception:
        return None


def _unit_text(unit: Any) -> str | None:
    """An OME unit (an enum with ``.value``) or a pint unit as text, e.g. ``µm``, ``nm``, ``ms``."""
    if unit is None:
        return None
    value = getattr(unit, "value", None)
    if isinstance(value, str):
        return value
    return format(unit, "~") if hasattr(unit, "dimensionality") else str(unit)


def _axis_unit(image: Any, axis: str) -> str | None:
    """The unit bioio attaches to ``axis`` (OME-Zarr does), else None."""
    try:
        return _unit_text(getattr(image.dimension_properties, axis).unit)
    except Exception:
        return None


def _take_spacing(image: Any, ome: Any, src: SourceImage) -> None:
    try:
        sizes = image.physical_pixel_sizes
    except Exception:
        sizes = None
    for a in "ZYX":
        value = getattr(sizes, a, None) if sizes is not None else None
        unit = _axis_unit(image, a)
        if ome is not None:
            value = getattr(ome, f"physical_size_{a.lower()}", None)
            unit = _unit_text(getattr(ome, f"physical_size_{a.lower()}_unit", None))
        value = positive(value)
        if value is None:
            continue
        factor = length_factor_um(unit) if unit else 1.0  # bioio's sizes are micrometres
        if factor is None:
            src.notes.append(f"unknown length unit {unit!r} along {a}: voxel size read as µm")
            factor = 1.0
        src.spacing[a] = value * factor


def _take_interval(image: Any, ome: Any, src: SourceImage) -> None:
    """The frame interval in s: bioio's timedelta, LIF's timelapse interval, or OME's increment."""
    candidates: list[tuple[Any, str | None]] = []
    for owner, attr in ((image, "time_interval"), (image.reader, "timelapse_interval")):
        try:
            candidates.append((getattr(owner, attr, None), _axis_unit(image, "T")))
        except Exception:
            continue
    if ome is not None:
        unit = _unit_text(getattr(ome, "time_increment_unit", None)) or "s"
        candidates.insert(0, (getattr(ome, "time_increment", None), unit))
    for value, unit in candidates:
        if isinstance(value, timedelta):
            seconds = positive(value.total_seconds())
        elif positive(value) is None:
            continue
        else:
            factor = time_factor_s(unit) if unit else None
            if factor is None:
                src.notes.append(
                    f"time step {value} has {'unit ' + repr(unit) if unit else 'no unit'}: read "
                    "as seconds"
                )
                factor = 1.0
            seconds = float(value) * factor
        if seconds is not None:
            src.spacing["T"] = seconds
            return


def _channel_names(image: Any, src: SourceImage) -> list[str] | None:
    try:
        names = [str(n) for n in image.channel_names]
    except Exception:
        return None
    if src.axes is None or "C" not in src.axes:
        return names if len(names) == 1 else None
    return names if len(names) == src.shape[src.axes.index("C")] else None
