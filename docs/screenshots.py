"""Screenshots of napari with the plugin's dock for the README, at 1280 × 800 (run under Xvfb).

    xvfb-run -a -s "-screen 0 1280x800x24" python docs/screenshots.py            # trains 45 s
    xvfb-run -a -s "-screen 0 1280x800x24" python docs/screenshots.py --seconds 5

The window is laid out as ``spatimeinr-napari`` lays it out on a 1280 × 800 screen. Writes
docs/train_widget.png (the Train tab after a run: live plot, Advanced form of the fast engine),
docs/render_widget.png (Render & Export, opened by itself when the run ended) and
docs/side_by_side.png (input | lazy render with the motion arrows | its uncertainty, in napari's
grid).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = (1280, 800)


def _wait(app, cond, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _settle(app, seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def trained_viewer(seconds: float, timeout: float = 120.0):
    """napari laid out as ``spatimeinr-napari`` lays it out at :data:`SIZE`, with the sample stack
    trained for ``seconds`` from the Train tab: (viewer, train tab, render tab, app, window)."""
    from qtpy.QtWidgets import QApplication

    from napari_spatimeinr import _napari_launch as launch
    from napari_spatimeinr._widgets.workflow import WorkflowWidget

    viewer = launch.build_viewer()
    launch.fit_to_screen(viewer, SIZE)
    wf = viewer.window._qt_window.findChild(WorkflowWidget)
    train, render = wf.train, wf.render
    app = QApplication.instance()
    tmp = Path(tempfile.mkdtemp(prefix="spatimeinr-shots-"))
    train.out_edit.setText(str(tmp / "nuclei.spatimeinr"))
    train._out_auto = False
    train.time_spin.setValue(seconds)
    train.validate()
    train.start()
    _wait(app, lambda: train.worker is None, seconds + timeout)
    if train.error_label.text():
        raise SystemExit(train.error_label.text())
    _settle(app)
    return viewer, train, render, app, viewer.window._qt_window


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=45.0, help="SpatimeINR training time")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()

    viewer, train, render, app, win = trained_viewer(args.seconds)
    win.grab().save(str(args.out / "render_widget.png"))  # the tab that opened by itself

    render.scale_t.setValue(4.0)
    render.scale_z.setValue(2.0)
    render.path_edit.setText(str(Path.home() / "nuclei_x4t_x2z.tif"))
    layer = render.add_layer()
    # 105 s: half-way between input frames 3 and 4 (the render has 4 frames per input frame), so
    # the right panel shows a frame that was never measured; the left, the input's nearest frame
    viewer.dims.set_current_step(0, 14)
    viewer.dims.set_current_step(1, 12)
    _wait(app, lambda: not layer.data.busy, 60)
    for z in (11, 12):  # a few planes, as a user browsing
        viewer.dims.set_current_step(1, z)
        _wait(app, lambda: not layer.data.busy, 60)
    render.uncertainty_check.setChecked(True)  # its map, in a third panel
    unc = render.uncertainty_layers[-1]
    motion = render.show_motion(True)  # the arrows, over the render's panel
    _wait(app, lambda: not unc.data.busy and not motion.busy, 60)
    viewer.status = f"{layer.name}: frame at {viewer.dims.point[0]:g} s"
    render.set_grid(True)
    _settle(app, 1.0)
    _wait(app, lambda: not layer.data.busy and not unc.data.busy, 60)
    _settle(app)
    win.grab().save(str(args.out / "side_by_side.png"))

    render.set_grid(False)
    from napari_spatimeinr._widgets.workflow import WorkflowWidget

    wf = win.findChild(WorkflowWidget)
    wf.tabs.setCurrentIndex(wf.TAB_TRAIN)
    train.advanced_box.expand(animate=False)
    _settle(app)
    train._scroll_area.verticalScrollBar().setValue(10**6)  # the plot, under the form
    viewer.reset_view()
    _settle(app)
    win.grab().save(str(args.out / "train_widget.png"))
    viewer.close()
    print(
        "wrote",
        *(args.out / n for n in ("train_widget.png", "render_widget.png", "side_by_side.png")),
    )


if __name__ == "__main__":
    main()
