"""Output values and provenance: float32 as is, or uint16 by one of two recorded mappings.

uint16 output:

* ``raw``: the input was stored as integers whose values fit 0..65535 (e.g. uint8, uint16, or a
  non-negative int16): the rendered values are rounded back to those raw integer units.
* ``linear``: otherwise the input's intensity range ``(lo, hi)`` is mapped linearly onto 0..65535
  (``raw ≈ offset + scale · value``, recorded in the metadata).

Values outside 0..65535 (e.g. the negative overshoot of cubic interpolation) are clipped, and the
number of clipped voxels is counted and recorded, never silently dropped. There is no 8-bit output.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import SpatimeINRError
from .meta import OutputMeta
from .source import PROVENANCE_KEY

OUTPUT_DTYPES = ("float32", "uint16")
_U16_MAX = 65535

# Fixed-width stand-ins for the clip counts in headers that are written before the data: they are
# replaced in place, at the same length, once the counts are known (see ``final_counts``).
TOKENS = {
    "clipped_low": "@@@@@@@@CLIP_LO@@@@@",
    "clipped_high": "@@@@@@@@CLIP_HI@@@@@",
    "nan_set_to_0": "@@@@@@@@NAN_0@@@@@@@",
}


def check_dtype(dtype: str) -> str:
    """``float32`` or ``uint16`` (anything else is refused, 8-bit included)."""
    try:
        d = str(np.dtype(dtype))
    except TypeError:
        d = str(dtype)
    if d not in OUTPUT_DTYPES:
        raise SpatimeINRError(
            f"Output type {dtype!r} is not supported: choose float32 (exact) or uint16 "
            "(raw integer units, or the input's range mapped onto 0..65535)."
        )
    return d


@dataclass
class Encoder:
    """Turns float32 slabs (input intensity units) into the output dtype, counting clipping."""

    dtype: str = "float32"
    mapping: str = "none"  # none | raw | linear
    scale: float = 1.0  # raw = offset + scale * stored
    offset: float = 0.0
    clipped_low: int = 0
    clipped_high: int = 0
    nan: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_output(cls, dtype: str, meta: OutputMeta) -> Encoder:
        dtype = check_dtype(dtype)
        if dtype == "float32":
            return cls()
        lo, hi = (float(v) for v in meta.intensity_range)
        try:
            src = np.dtype(meta.source_dtype)
        except TypeError:
            src = np.dtype("float32")
        if src.kind in "ui" and lo >= 0 and hi <= _U16_MAX:
            return cls(dtype="uint16", mapping="raw")
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise SpatimeINRError(
                f"The input's intensity range ({lo}, {hi}) is not finite: write float32 instead."
            )
        if hi <= lo:
            hi = lo + 1.0
        return cls(dtype="uint16", mapping="linear", scale=(hi - lo) / _U16_MAX, offset=lo)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Encode a float32 block (thread-safe; counts are accumulated)."""
        if self.dtype == "float32":
            return np.ascontiguousarray(block, dtype="<f4")
        v = np.asarray(block, dtype=np.float32)
        if self.mapping == "linear":
            v = (v - np.float32(self.offset)) * np.float32(1.0 / self.scale)
        v = np.rint(v)
        nan = np.isnan(v)
        n_nan = int(nan.sum())
        low = v < 0
        high = v > _U16_MAX
        n_low, n_high = int(low.sum()), int(high.sum())
        if n_nan:
            v[nan] = 0
        np.clip(v, 0, _U16_MAX, out=v)
        with self._lock:
            self.clipped_low += n_low
            self.clipped_high += n_high
            self.nan += n_nan
        return v.astype("<u2")

    def add_counts(self, low: int, high: int, nan: int) -> None:
        with self._lock:
            self.clipped_low += low
            self.clipped_high += high
            self.nan += nan

    def record(self, final: bool) -> dict[str, Any] | None:
        """What the metadata says about the encoding (None for float32)."""
        if self.dtype == "float32":
            return None
        d: dict[str, Any] = {"mapping": self.mapping}
        if self.mapping == "linear":
            d.update(
                {
                    "scale": self.scale,
                    "offset": self.offset,
                    "formula": "raw = offset + scale * value",
                }
            )
        else:
            d["formula"] = "raw = value"
        counts = {
            "clipped_low": self.clipped_low,
            "clipped_high": self.clipped_high,
            "nan_set_to_0": self.nan,
        }
        for key, value in counts.items():
            d[key] = value if final else TOKENS[key]
        return d


def provenance_dict(meta: OutputMeta, enc: Encoder, final: bool = True) -> dict[str, Any]:
    """The provenance every output carries: ``meta.provenance`` plus geometry and encoding."""
    t, z, y, x = (float(v) for v in meta.origin)
    prov = dict(meta.provenance)
    prov.update(
        {
            "name": meta.name,
            "axes": "TCZYX" if meta.channel_names else "TZYX",
            "voxel_size_um": {
                "z": meta.voxel_size[0],
                "y": meta.voxel_size[1],
                "x": meta.voxel_size[2],
            },
            "frame_interval_s": meta.frame_interval,
            "origin": {"t_s": t, "z_um": z, "y_um": y, "x_um": x},
            "intensity_range": list(meta.intensity_range),
            "source_dtype": meta.source_dtype,
            "dtype": enc.dtype,
        }
    )
    if meta.channel_names:
        prov["channel_names"] = list(meta.channel_names)
        prov["channel_colors"] = list(meta.channel_colors or [])
    if enc.dtype != "float32":
        prov["uint16"] = enc.record(final)
    return prov


def provenance_json(
    meta: OutputMeta, enc: Encoder, final: bool = True, indent: int | None = None
) -> str:
    """``{"spatimeinr": {...}}`` as JSON; with ``final=False`` the clip counts are stand-ins."""
    text = json.dumps(
        {PROVENANCE_KEY: provenance_dict(meta, enc, final)}, indent=indent, default=str
    )
    if not final:
        for token in TOKENS.values():
            text = text.replace(f'"{token}"', token)
    return text


def final_counts(enc: Encoder) -> dict[str, str]:
    """Replacement texts for the stand-ins (same width)."""
    values = {
        "clipped_low": enc.clipped_low,
        "clipped_high": enc.clipped_high,
        "nan_set_to_0": enc.nan,
    }
    return {TOKENS[k]: str(v).ljust(len(TOKENS[k])) for k, v in values.items()}


def patch_tokens(fh: Any, start: int, length: int, enc: Encoder) -> int:
    """Replace the stand-ins in ``fh`` bytes [start, start+length) by the final counts, in place.

    Handles UTF-8/ASCII and UTF-16 (ImageJ's Info) text. Returns the number of replacements.
    """
    if enc.dtype == "float32":
        return 0
    fh.seek(start)
    buf = bytearray(fh.read(length))
    n = 0
    for token, value in final_counts(enc).items():
        for codec in ("utf-8", "utf-16-le", "utf-16-be"):
            old, new = token.encode(codec), value.encode(codec)
            i = buf.find(old)
            found = i >= 0
            while i >= 0:
                buf[i : i + len(old)] = new
                n += 1
                i = buf.find(old, i + len(new))
            if found:
                break
    fh.seek(start)
    fh.write(bytes(buf))
    return n
