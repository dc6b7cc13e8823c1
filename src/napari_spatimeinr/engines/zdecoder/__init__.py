"""The learned spatial part of the ``fast`` engine: z super-resolution from lateral self-supervision.

Everything of it lives here (docs/method.md, "Space"):

* :mod:`.degrade` — make a lateral (y–x) plane look like a z line at the scale of the render: box
  of the z voxel's extent, after an estimated extra axial blur and contrast gain, subsampled, with
  a z voxel's noise added (Poisson–Gaussian, estimated); the blurred plane at the output cells is
  the target. Also the estimates of that blur, gain and noise from the stack.
* :mod:`.decoder` — a small 2D CNN encoder (a latent per coarse voxel) and a LIIF-style implicit
  decoder (MLP on latent, local offset and output cell size) predicting a residual over the
  mean-preserving spline, projected so that mean-pooling returns the input (cycle consistency)
  unless the held-out planes measured better without (denoising a noisy input).
* :mod:`.train` — the training generator (``train_spatial``), held-out planes and the self-check
  against spline / cubic / linear / nearest; the error model of the uncertainty map's z part.
* :mod:`.apply` — the renderer side: z resampling of a frame with the decoder (x–z and y–z planes,
  averaged) or with whichever resampler won the held-out check; the decoder's own expected error.
"""

from __future__ import annotations

from typing import Any

SPATIAL_FILE = "spatial.pt"

__all__ = ["SPATIAL_FILE", "summary", "why_not"]


def why_not(record: dict[str, Any]) -> str | None:
    """Why the z check did not keep the decoder at any factor, in words (None when it did)."""
    choice = record.get("choice") or {}
    if not choice or "decoder" in choice.values():
        return None
    gains = [float(g) for g in (record.get("gain_db") or {}).values()]
    best = max(gains) if gains else float("nan")
    margin = float(record.get("keep_margin_db", 0.0))
    if best <= 0.02:
        text = "it learned nothing over the interpolations on held-out planes"
    else:
        text = "its gain on held-out planes was below the margin"
    text += f" (best gain {best:+.2f} dB" + (f", needs > {margin:+.2f})" if margin else ")")
    zc = record.get("z_check") or {}
    if zc and max(zc, key=zc.get) == "nearest" and record.get("z_check_decides") is not False:
        text += "; along z itself nearest beats the smooth interpolations (z check)"
    return text


def summary(record: dict[str, Any] | None, short: bool = False) -> str:
    """What the spatial part is and its held-out gain, in one line (model info, CLI, widgets).

    ``record`` is ``meta.json["spatial"]``; the gain is the decoder's PSNR on the held-out lateral
    planes minus the best of spline / cubic / linear / nearest, per validated z factor. When the
    decoder is used at no factor, the line says so and why (:func:`why_not`).
    """
    if not record:
        return "Space (z): mean-preserving spline (no learned spatial part)"
    if record.get("kind") != "decoder":
        return f"Space (z): mean-preserving spline ({record.get('why', 'no decoder')})"
    gains = {float(f): g for f, g in record["gain_db"].items()}
    lost = sorted({c for c in record["choice"].values() if c != "decoder"})
    why = why_not(record)
    if short:
        if why:
            return f"Space (z): {', '.join(lost)}; decoder not used: {why}"
        lo, hi = min(gains.values()), max(gains.values())
        text = f"Space (z): learned decoder, held-out gain {lo:+.2f} to {hi:+.2f} dB"
        return text + (f"; {', '.join(lost)} where it lost" if lost else "")
    parts = []
    for f, gain in sorted(gains.items()):
        choice = record["choice"][next(k for k in record["choice"] if float(k) == f)]
        parts.append(f"x{f:.3g} {gain:+.2f} dB" + ("" if choice == "decoder" else f" -> {choice}"))
    zc = record.get("z_check") or {}
    tail = ""
    if zc and max(zc, key=zc.get) == "nearest":
        tail = (
            "; the z check (z pooled by 2) ranks nearest first (recorded, not deciding)"
            if record.get("z_check_decides") is False
            else "; nearest wins along z itself (z check)"
        )
    if why:
        tail = f"; decoder not used: {why}"
    blur = record.get("axial_blur_px")
    scale = f"z/x voxel ratio {record['ratio']:g}"
    if blur is not None:
        scale += f", axial blur {float(blur):.3g} px"
        stats = record.get("blur_stats") or {}
        lateral = stats.get("rho_lateral_0")
        short = stats.get("voxels") is not None and float(stats["voxels"]) < 3
        if short or (lateral is not None and lateral != lateral):  # NaN: no lateral line fitted
            scale += " (not estimated: lateral lines too short)"
        else:
            scale += " (estimated)"
        gain = record.get("axial_gain")
        if gain is not None and abs(float(gain) - 1.0) > 0.05:
            scale += f", axial contrast x{float(gain):.2g}"
    noise = record.get("noise")
    if noise and noise.get("matched", True) and (noise.get("a") or noise.get("b")):
        scale += ", voxel noise matched"
    return (
        f"Space (z): learned decoder (lateral self-supervision, {scale}); held-out gain over the "
        "best interpolation: " + ", ".join(parts) + tail
    )
