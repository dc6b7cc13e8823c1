"""``spatimeinr motion``: the velocity field of a model, in µm/s."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..core.errors import SpatimeINRError, StopRequested
from ..core.text import fmt_bytes, fmt_seconds
from .console import _bar, _graceful_stop, _say


def cmd_motion(args: argparse.Namespace) -> int:
    """Export the velocity field of a motion model (TCZYX, µm/s). The checks run before any work:
    a model without motion, the suffix, an existing output, the folder, the free disk."""
    from .. import api
    from ..core.resources import check_writable
    from ..engines.fast.velocity import VelocityField
    from ..io.write import check_target
    from ..io.write_velocity import velocity_bytes, velocity_family

    if args.device in ("cuda", "mps"):
        from ..core.device import resolve_device

        resolve_device(args.device)  # a missing GPU is refused before any work
    out = Path(args.output)
    velocity_family(out)  # an unknown suffix is refused before the model is opened
    check_target(out, args.overwrite)
    check_writable(out, "motion file")
    field = VelocityField(api.open_model(args.model_dir), args.device)
    t, c, z, y, x = field.shape
    solve = (
        f"; {field.n_unsolved} of {t} flows were not stored and are solved now"
        if field.n_unsolved
        else ""
    )
    _say(
        args,
        f"Motion T={t} intervals C={c} (vz, vy, vx in µm/s) Z={z} Y={y} X={x} float32, about "
        f"{fmt_bytes(velocity_bytes(field.shape))} on disk; peak memory about "
        f"{fmt_bytes(field.peak_bytes)}; estimated time {fmt_seconds(field.estimate_seconds())}"
        f"{solve}",
    )
    bar = _bar(args, t, "motion", "interval")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    t0 = time.perf_counter()
    with _graceful_stop() as stop:
        try:
            api.export_motion(
                field,
                out,
                overwrite=args.overwrite,
                progress=progress,
                cancel=stop,
                device=args.device,
                force=args.force,
            )
        except StopRequested:
            bar.close()
            raise SpatimeINRError("Motion export cancelled: no output was written.") from None
    bar.close()
    _say(args, f"Wrote {out} in {fmt_seconds(time.perf_counter() - t0)}")
    return 0
