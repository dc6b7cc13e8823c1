"""Physical units found in image metadata, converted to µm (space) and seconds (time)."""

from __future__ import annotations

import math

_LENGTH_UM = {
    "pm": 1e-6,
    "picometer": 1e-6,
    "å": 1e-4,
    "a": 1e-4,
    "angstrom": 1e-4,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "um": 1.0,
    "µm": 1.0,  # micro sign
    "μm": 1.0,  # Greek mu
    "\\u00b5m": 1.0,  # as some ImageJ files spell it
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "in": 25400.0,
    "inch": 25400.0,
}

_TIME_S = {
    "ns": 1e-9,
    "nanosecond": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "usec": 1e-6,
    "microsecond": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def _key(unit: str) -> str:
    return unit.strip().lower()


def length_factor_um(unit: str | None) -> float | None:
    """Micrometres per ``unit`` (None for an unknown or missing unit, e.g. ``pixel``)."""
    if not unit:
        return None
    return _LENGTH_UM.get(_key(unit))


def time_factor_s(unit: str | None) -> float | None:
    """Seconds per ``unit`` (None for an unknown or missing unit)."""
    if not unit:
        return None
    return _TIME_S.get(_key(unit))


def positive(value: object) -> float | None:
    """``value`` as a float if it is a finite positive number, else None."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None
