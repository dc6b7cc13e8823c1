"""Text for people: sizes, shapes and durations, written the same way by every front end."""

from __future__ import annotations


def fmt_bytes(n: float) -> str:
    """``1.23 GB``: decimal units, three significant digits (``512 B`` below a kilobyte)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        if abs(n) < 1000 or unit == "ZB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} YB"  # pragma: no cover


def fmt_shape(shape: tuple[int, ...]) -> str:
    """``6 × 4,000 × 16``."""
    return " × ".join(f"{int(s):,}" for s in shape)


def fmt_seconds(s: float | None) -> str:
    """``45 s``, ``2 min 05 s``, ``1 h 02 min``; ``?`` when unknown."""
    if s is None or s != s:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
