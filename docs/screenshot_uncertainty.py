"""Screenshot of the uncertainty layer for the README, at 1280 × 800 (run under Xvfb).

    xvfb-run -a -s "-screen 0 1280x800x24" python docs/screenshot_uncertainty.py   # trains 45 s

The synthetic sample, SpatimeINR ``fast`` trained through the Train tab, rendered ×4 in time with
*Show uncertainty* checked; input, render and uncertainty side by side at an instant half-way
between two measured frames. Writes docs/uncertainty.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from screenshots import HERE, _settle, _wait, trained_viewer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=45.0, help="SpatimeINR training time")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()

    viewer, train, render, app, win = trained_viewer(args.seconds, timeout=180.0)
    render.scale_t.setValue(4.0)
    render.uncertainty_check.setChecked(True)
    layer = render.add_layer()
    _wait(app, lambda: bool(render.uncertainty_layers), 10)  # added in the next event-loop turn
    unc = render.uncertainty_layers[0]
    # 105 s: half-way between input frames 3 and 4, a frame that was never measured
    viewer.dims.set_current_step(0, 14)
    viewer.dims.set_current_step(1, 6)
    _wait(app, lambda: not layer.data.busy and not unc.data.busy, 120)
    viewer.layers.selection.active = unc
    render.set_grid(True)
    _settle(app, 1.0)
    viewer.reset_view()
    _wait(app, lambda: not layer.data.busy and not unc.data.busy, 120)
    _settle(app)
    win.grab().save(str(args.out / "uncertainty.png"))
    viewer.close()
    print("wrote", args.out / "uncertainty.png")


if __name__ == "__main__":
    main()
