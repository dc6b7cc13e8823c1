"""The learned spatial part of the ``fast`` engine: z super-resolution from lateral self-supervision.

Everything of it lives here (docs/method.md, "Space"):

* :mod:`.degrade` — make a lateral (y–x) plane look like a z line: box of the z voxel's extent,
  convolved with an estimated extra axial blur, subsampled; the blurred plane at the output cells is
  the target. Also the estimate of that blur from the stack.
* :mod:`.decoder` — a small 2D CNN encoder (a latent per coarse voxel) and a LIIF-style implicit
  decoder (MLP on latent, local offset and output cell size) predicting a residual over the
  mean-preserving spline, projected so that mean-pooling returns the input (cycle consistency).
* :mod:`.train` — the training generator (``train_spatial``), held-out planes and the self-check
  against spline / cubic / linear / nearest.
* :mod:`.apply` — the renderer side: z resampling of a frame with the decoder (x–z and y–z planes,
  averaged) or with whichever resampler won the held-out check.
"""

from __future__ import annotations

from typing import Any

SPATIAL_FILE = "spatial.pt"

__all__ = ["SPATIAL_FILE", "summary"]


def summary(record: dict[str, Any] | None, short: bool = False) -> str:
    """What the spatial part is and its held-out gain, in one line (model info, CLI, widgets).

    ``record`` is ``meta.json["spatial"]``; the gain is the decoder's PSNR on the held-out lateral
    planes minus the best of spline / cubic / linear / nearest, per validated z factor.
    """
    if not record:
        return "Space (z): mean-preserving spline (no learned spatial part)"
    if record.get("kind") != "decoder":
        return f"Space (z): mean-preserving spline ({record.get('why', 'no decoder')})"
    gains = {float(f): g for f, g in record["gain_db"].items()}
    lost = sorted({c for c in record["choice"].values() if c != "decoder"})
    if short:
        lo, hi = min(gains.values()), max(gains.values())
        text = f"Space (z): learned decoder, held-out gain {lo:+.2f} to {hi:+.2f} dB"
        return text + (f"; {', '.join(lost)} where it lost" if lost else "")
    parts = []
    for f, gain in sorted(gains.items()):
        choice = record["choice"][next(k for k in record["choice"] if float(k) == f)]
        parts.append(f"x{f:.3g} {gain:+.2f} dB" + ("" if choice == "decoder" else f" -> {choice}"))
    zc = record.get("z_check") or {}
    why = (
        "; nearest wins along z itself (z check)" if zc and max(zc, key=zc.get) == "nearest" else ""
    )
    return (
        f"Space (z): learned decoder (lateral self-supervision, z/x voxel ratio "
        f"{record['ratio']:g}); held-out gain over the best interpolation: "
        + ", ".join(parts)
        + why
    )
