"""OME-Zarr reader (NGFF 0.4 on Zarr v2 and 0.5 on Zarr v3), highest resolution level, lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SpatimeINRError
from .source import PROVENANCE_KEY, SourceImage, apply_provenance
from .units import length_factor_um, positive, time_factor_s

_AXIS_NAMES = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}


def multiscales_of(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The NGFF ``multiscales`` list of a group's attributes (0.5 nests it under ``ome``)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return attrs.get("multiscales")


def read_zarr(path: Path) -> SourceImage:
    """Read an OME-Zarr image (or a bare Zarr array) as a lazy dask array."""
    import dask.array as da
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise SpatimeINRError(
            f"Cannot open {path.name} as Zarr ({exc}): check that it is a complete .zarr folder."
        ) from None
    if isinstance(node, zarr.Array):
        return SourceImage(data=da.from_zarr(node), source_dtype=str(node.dtype), metadata="zarr")
    attrs = dict(node.attrs)
    ms = multiscales_of(attrs)
    if not ms:
        raise SpatimeINRError(
            f"{path.name} is a Zarr group without OME-Zarr 'multiscales' metadata: give the path "
            f"of the image inside it (e.g. {path.name}/0) or write it as OME-Zarr."
        )
    m = ms[0]
    datasets = m.get("datasets") or []
    if not datasets:
        raise SpatimeINRError(
            f"{path.name}: the OME-Zarr multiscales metadata lists no datasets: rewrite the file."
        )
    arr = node[datasets[0]["path"]]
    src = SourceImage(
        data=da.from_zarr(arr), source_dtype=str(arr.dtype), metadata=f"ome-zarr {_version(attrs)}"
    )
    axes_meta = m.get("axes")
    units: list[str | None] = [None] * arr.ndim
    if axes_meta:
        names = [a["name"] if isinstance(a, dict) else a for a in axes_meta]
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
        letters = [_AXIS_NAMES.get(str(n).lower()) for n in names]
        if None in letters or len(set(letters)) != len(letters) or len(letters) != arr.ndim:
            src.axes_error = (
                f"The OME-Zarr axes {names} of {path.name} are ambiguous: give --axes with one "
                "letter per axis from T, C, Z, Y, X."
            )
            letters = []
        src.axes = "".join(letters) or None  # type: ignore[arg-type]
    scale, translation = _transforms(datasets[0], m, arr.ndim)
    if src.axes:
        for letter, s, o, unit in zip(src.axes, scale, translation, units, strict=True):
            if letter == "C":
                continue
            f = time_factor_s(unit) if letter == "T" else length_factor_um(unit)
            if f is None:
                if unit:
                    src.notes.append(f"unknown unit {unit!r} of axis {letter}: read as µm/s")
                f = 1.0
            if (v := positive(s)) is not None:
                src.spacing[letter] = v * f
            if np.isfinite(o):
                src.origin[letter] = float(o) * f
    prov = attrs.get(PROVENANCE_KEY)
    apply_provenance(src, prov if isinstance(prov, dict) else None)
    return src


def _version(attrs: dict[str, Any]) -> str:
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        return str(ome.get("version", "0.5"))
    ms = attrs.get("multiscales") or [{}]
    return str(ms[0].get("version", "?"))


def _transforms(
    dataset: dict[str, Any], multiscale: dict[str, Any], ndim: int
) -> tuple[list[float], list[float]]:
    """Combined scale and translation of a dataset (dataset-level, then multiscale-level)."""
    scale = [1.0] * ndim
    translation = [0.0] * ndim
    for transforms in (
        dataset.get("coordinateTransformations") or [],
        multiscale.get("coordinateTransformations") or [],
    ):
        for tr in transforms:
            if tr.get("type") == "scale" and "scale" in tr:
                s = [float(v) for v in tr["scale"]]
                scale = [a * b for a, b in zip(scale, s, strict=True)]
                translation = [a * b for a, b in zip(translation, s, strict=True)]
            elif tr.get("type") == "translation" and "translation" in tr:
                t = [float(v) for v in tr["translation"]]
                translation = [a + b for a, b in zip(translation, t, strict=True)]
    return scale, translation
