"""Screenshot of the uncertainty layer for the README, at 1280 × 800 (run under Xvfb).

    xvfb-run -a -s "-screen 0 1280x800x24" python docs/screenshot_uncertainty.py   # trains 45 s

The synthetic sample, SpatimeINR ``fast`` trained through the Train tab, rendered ×4 in time with
*Show uncertainty* checked; input, render and uncertainty side by side at an instant half-way
between two measured frames. Writes docs/uncertainty.png.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from screenshots import HERE, SIZE, _settle, _wait


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=45.0, help="SpatimeINR training time")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()

    from qtpy.QtWidgets import QApplication

    from napari_spatimeinr import _napari_launch as launch
    from napari_spatimeinr._widgets.workflow import WorkflowWidget

    viewer = launch.build_viewer()
    launch.fit_to_screen(viewer, SIZE)
    wf = viewer.window._qt_window.findChild(WorkflowWidget)
    train, render = wf.train, wf.render
    app = QApplication.instance()
    win = viewer.window._qt_window

    tmp = Path(tempfile.mkdtemp(prefix="spatimeinr-shots-"))
    train.out_edit.setText(str(tmp / "nuclei.spatimeinr"))
    train._out_auto = False
    train.time_spin.setValue(args.seconds)
    train.validate()
    train.start()
    _wait(app, lambda: train.worker is None, args.seconds + 180)
    if train.error_label.text():
        raise SystemExit(train.error_label.text())
    _settle(app)
    render.scale_t.setValue(4.0)
    render.uncertainty_check.setChecked(True)
    layer = render.add_layer()
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
