"""TIFF readers: ImageJ hyperstacks, OME-TIFF and plain TIFF (memory-mapped when possible)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..core.errors import SpatimeINRError
from ..data.axes import from_file_axes
from .logs import LogCollector, captured_log
from .source import SourceImage, apply_provenance, parse_provenance
from .units import length_factor_um, positive, time_factor_s

# TIFF ResolutionUnit values whose resolution we trust for plain TIFFs (inch is usually a
# screen default such as 72 dpi, so it is ignored).
_RESUNIT_UM = {3: 1e4}  # CENTIMETER


#: What tifffile logs about a damaged file (pages or values past its end, broken metadata).
_DAMAGE = (
    "invalid page offset",
    "invalid value offset",
    "corrupted",
    "truncated",
    "incomplete",
    "not enough data",
    "invalid tag",
)


def _incomplete(path: Path, why: str) -> SpatimeINRError:
    return SpatimeINRError(
        f"{path.name} is incomplete or damaged ({why}): copy or save it again (e.g. after an "
        "interrupted transfer) and check that it opens fully in Fiji."
    )


def _check_complete(tif: tifffile.TiffFile, path: Path, log: LogCollector) -> None:
    """Refuse a file that is shorter than its pages, or whose pages disagree with its metadata."""
    for msg in log.messages:
        low = msg.lower()
        if any(k in low for k in _DAMAGE):
            raise _incomplete(path, msg.rsplit("> ", 1)[-1].strip(" .'\")"))
    size = path.stat().st_size
    series = tif.series[0]
    offset = getattr(series, "dataoffset", None)
    if offset is not None and offset + series.nbytes > size:
        raise _incomplete(
            path,
            f"its image data needs {offset + series.nbytes:,} bytes but the file has {size:,}",
        )
    pages = [tif.pages.first] if offset is not None else list(getattr(series, "pages", []))
    for i, page in enumerate(pages):
        if page is None or not hasattr(page, "dataoffsets"):
            continue
        for off, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if off + count > size:
                raise _incomplete(
                    path, f"page {i + 1}'s data ends past the end of the file ({size:,} bytes)"
                )
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        planes = math.prod(int(s) for s in series.shape[:-2])
        if "S" in series.axes[-1:]:
            planes = math.prod(int(s) for s in series.shape[:-3])
        images = ij.get("images")
        try:
            images = int(images) if images is not None else None
        except (TypeError, ValueError):
            images = None
        if images is not None and images > planes:
            raise _incomplete(
                path, f"its ImageJ metadata lists {images} planes but only {planes} can be read"
            )
    if tif.is_ome and tif.ome_metadata:
        try:
            pixels = ET.fromstring(tif.ome_metadata).find("{*}Image/{*}Pixels")
        except ET.ParseError:
            pixels = None
        if pixels is not None:
            try:
                want = math.prod(int(pixels.attrib.get(f"Size{a}", 1)) for a in "TCZYX")
            except ValueError:
                want = 0
            have = math.prod(int(s) for s in series.shape)
            if want > have:
                raise _incomplete(
                    path,
                    f"its OME metadata describes {want:,} values but only {have:,} can be read",
                )


@contextmanager
def _closed_on_error(tif: tifffile.TiffFile, path: Path) -> Iterator[None]:
    """Close ``tif`` when the block fails; tifffile's own errors become "incomplete" refusals."""
    try:
        yield
    except tifffile.TiffFileError as exc:
        tif.close()
        raise _incomplete(path, str(exc).rsplit("> ", 1)[-1].strip(" .'\")")) from None
    except BaseException:
        tif.close()
        raise


def read_tiff(path: Path) -> SourceImage:
    """Read the first series of a TIFF file; OME and ImageJ metadata are recognized by content.

    A file shorter than its pages or inconsistent with its ImageJ/OME metadata (as after an
    interrupted copy) is refused as incomplete, never read as the part that survived.
    """
    with captured_log("tifffile") as log:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many types for broken files
            raise SpatimeINRError(
                f"Cannot read {path.name} as TIFF ({exc}): check that the file is complete and is "
                "a TIFF image."
            ) from None
        with _closed_on_error(tif, path):
            if not tif.series:
                raise SpatimeINRError(
                    f"Cannot read {path.name} as TIFF: it holds no image (empty or damaged file). "
                    "Check that the file is complete (e.g. open it in Fiji)."
                )
            series = tif.series[0]
            _check_complete(tif, path, log)
            data, lazy = _load(tif, path)
            _check_complete(tif, path, log)
    with _closed_on_error(tif, path):
        file_axes = series.axes
        if tif.is_ome:
            src = _ome(tif, data, file_axes)
        elif tif.is_imagej:
            src = _imagej(tif, data, file_axes)
        else:
            src = _plain(tif, data, file_axes)
        # Values mapped through a calibration are no longer the stored integers.
        src.source_dtype = str(np.dtype(series.dtype)) if src.value_scale is None else "float32"
    if lazy:
        src.close = tif.close
    else:
        tif.close()
    return src


def _load(tif: tifffile.TiffFile, path: Path) -> tuple[Any, bool]:
    """The first series: a memory map if stored contiguously, else a lazy zarr view (True: the
    file must stay open while it is read), else in memory."""
    try:
        return tifffile.memmap(path, series=0, mode="r"), False
    except Exception:
        pass
    try:
        import dask.array as da
        import zarr

        return da.from_zarr(zarr.open(tif.series[0].aszarr(), mode="r")), True
    except Exception:
        from ..core.resources import check_read

        check_read(tuple(int(s) for s in tif.series[0].shape), path.name)  # before loading it
        return tif.series[0].asarray(), False


def _file_axes(src: SourceImage, file_axes: str) -> None:
    """Set ``src.axes`` from the file's axis letters, or say why they cannot be used."""
    try:
        src.axes = from_file_axes(file_axes, src.shape)
    except SpatimeINRError as exc:
        src.axes, src.axes_error = None, str(exc)


def _resolution_um(page: Any, unit_um: float | None) -> tuple[float | None, float | None]:
    """(y, x) pixel size in µm from the X/YResolution tags, given µm per resolution unit."""
    try:
        xres, yres = page.resolution
    except Exception:
        return None, None
    if unit_um is None:
        return None, None
    px = unit_um / xres if positive(xres) else None
    py = unit_um / yres if positive(yres) else None
    return py, px


def _imagej(tif: tifffile.TiffFile, data: Any, file_axes: str) -> SourceImage:
    ij: dict[str, Any] = tif.imagej_metadata or {}
    src = SourceImage(data=data, metadata="imagej")
    _file_axes(src, file_axes)
    unit = str(ij.get("unit", "") or "")
    f_xy = length_factor_um(unit)
    if f_xy is None:
        if unit and unit.lower() not in ("pixel", "pixels"):
            src.notes.append(f"unknown length unit {unit!r}: voxel size read as µm")
        f_xy = 1.0
        known_unit = False
    else:
        known_unit = True
    f_y = length_factor_um(str(ij.get("yunit", ""))) or f_xy
    f_z = length_factor_um(str(ij.get("zunit", ""))) or f_xy
    page = tif.pages.first
    py, px = _resolution_um(page, 1.0)
    if px is not None and (known_unit or px != 1.0):
        src.spacing["X"] = px * f_xy
    if py is not None and (known_unit or py != 1.0):
        src.spacing["Y"] = py * f_y
    if (sp := positive(ij.get("spacing"))) is not None:
        src.spacing["Z"] = sp * f_z
    tunit = str(ij.get("tunit", "") or "sec")
    f_t = time_factor_s(tunit)
    if f_t is None:
        src.notes.append(f"unknown time unit {tunit!r}: frame interval read as seconds")
        f_t = 1.0
    fi = positive(ij.get("finterval"))
    if fi is None and (fps := positive(ij.get("fps"))) is not None:
        fi = 1.0 / fps
    if fi is not None:
        src.spacing["T"] = fi * f_t
    for key, letter in (("xorigin", "X"), ("yorigin", "Y"), ("zorigin", "Z")):
        o = ij.get(key)
        if o is not None and letter in src.spacing:
            try:
                src.origin[letter] = -float(o) * src.spacing[letter]
            except (TypeError, ValueError):
                pass
    # ImageJ calibration function 0 = straight line: value = c0 + c1 * stored.
    if str(ij.get("cf", "")) == "0" and "c0" in ij and "c1" in ij:
        try:
            src.value_scale = (float(ij["c1"]), float(ij["c0"]))
        except (TypeError, ValueError):
            pass
    apply_provenance(src, parse_provenance(ij.get("Info")))
    return src


def _plain(tif: tifffile.TiffFile, data: Any, file_axes: str) -> SourceImage:
    src = SourceImage(data=data, axes=None, metadata="tiff")
    if tif.is_shaped:
        # tifffile's own JSON description: axes are known if they were given when writing.
        if set(file_axes) & set("TCZ"):
            _file_axes(src, file_axes)
        src.metadata = "tifffile"
    if "S" in file_axes and src.axes is None:
        _file_axes(src, file_axes)
    page = tif.pages.first
    unit_um = _RESUNIT_UM.get(int(page.resolutionunit or 1))
    py, px = _resolution_um(page, unit_um)
    if px is not None and py is not None:
        src.spacing.update({"Y": py, "X": px})
    apply_provenance(src, parse_provenance(page.description))
    return src


def _ome(tif: tifffile.TiffFile, data: Any, file_axes: str) -> SourceImage:
    src = SourceImage(data=data, metadata="ome")
    _file_axes(src, file_axes)
    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except ET.ParseError:
        src.notes.append("unreadable OME-XML: physical sizes not read")
        return src
    image = root.find("{*}Image")
    pixels = image.find("{*}Pixels") if image is not None else None
    if pixels is None:
        return src
    a = pixels.attrib
    for letter in "XYZ":
        v = positive(a.get(f"PhysicalSize{letter}"))
        if v is None:
            continue
        unit = a.get(f"PhysicalSize{letter}Unit", "µm")
        f = length_factor_um(unit)
        if f is None:
            src.notes.append(f"unknown unit {unit!r} of PhysicalSize{letter}: read as µm")
            f = 1.0
        src.spacing[letter] = v * f
    ti = positive(a.get("TimeIncrement"))
    f_t = time_factor_s(a.get("TimeIncrementUnit", "s")) or 1.0
    if ti is None:
        ti, f_t = _delta_t(pixels)
    if ti is not None:
        src.spacing["T"] = ti * f_t
    desc = image.find("{*}Description") if image is not None else None
    apply_provenance(src, parse_provenance(desc.text if desc is not None else None))
    return src


def _delta_t(pixels: ET.Element) -> tuple[float | None, float]:
    """Median time between frames from the Plane DeltaT attributes (first Z and C)."""
    times: dict[int, float] = {}
    unit = "s"
    for plane in pixels.findall("{*}Plane"):
        p = plane.attrib
        if p.get("TheZ", "0") != "0" or p.get("TheC", "0") != "0" or "DeltaT" not in p:
            continue
        try:
            times[int(p.get("TheT", "0"))] = float(p["DeltaT"])
        except ValueError:
            continue
        unit = p.get("DeltaTUnit", unit)
    if len(times) < 2:
        return None, 1.0
    t = np.array([times[k] for k in sorted(times)])
    step = positive(float(np.median(np.diff(t))))
    return step, time_factor_s(unit) or 1.0
