"""Screenshots of the napari widgets for the README (run under Xvfb).

    xvfb-run -a python docs/screenshots.py            # trains SpatimeINR for 20 s on the sample
    xvfb-run -a python docs/screenshots.py --seconds 5

Writes docs/train_widget.png, docs/render_widget.png and docs/side_by_side.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _wait(app, cond, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _content(widget):
    """The whole content of a dock widget, also the part scrolled out of view."""
    area = getattr(widget, "_scroll_area", None)
    if area is None:
        return widget
    inner = area.widget()
    inner.resize(inner.width(), max(inner.height(), inner.sizeHint().height()))
    return inner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="SpatimeINR training time")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()

    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-spatimeinr")
    viewer.window._qt_window.resize(1700, 1250)
    viewer.open_sample("napari-spatimeinr", "nuclei_timelapse")
    train_dock, train = viewer.window.add_plugin_dock_widget("napari-spatimeinr", "Train")
    render_dock, render = viewer.window.add_plugin_dock_widget(
        "napari-spatimeinr", "Render & Export"
    )
    app = QApplication.instance()

    tmp = Path(tempfile.mkdtemp(prefix="spatimeinr-shots-"))
    train.out_edit.setText(str(tmp / "nuclei.spatimeinr"))
    train._out_auto = False
    train.time_spin.setValue(args.seconds)
    train.validate()
    train.start()
    _wait(app, lambda: train.worker is None, args.seconds + 120)
    if train.error_label.text():
        raise SystemExit(train.error_label.text())
    train.out_edit.setText(str(tmp / "nuclei_2.spatimeinr"))  # as after a run
    win = viewer.window._qt_window
    app.processEvents()
    win.resizeDocks([train_dock, render_dock], [640, 560], Qt.Orientation.Vertical)
    win.resizeDocks([train_dock], [560], Qt.Orientation.Horizontal)

    _wait(app, lambda: train._preview_worker is None, 30)
    for ly in [ly for ly in viewer.layers if "preview" in ly.metadata]:
        viewer.layers.remove(ly)  # the side-by-side view shows the input and the render only
    render.scale_t.setValue(4.0)
    render.scale_z.setValue(2.0)
    render.path_edit.setText(str(Path.home() / "nuclei_x4t_x2z.tif"))
    layer = render.add_layer()
    # 105 s: half-way between input frames 3 and 4 (the render has 4 frames per input frame), so
    # the right panel shows a frame that was never measured; the left, the input's nearest frame
    viewer.dims.set_current_step(0, 14)
    viewer.dims.set_current_step(1, 12)
    _wait(app, lambda: not layer.data.busy, 60)
    for z in (11, 12):  # a few planes, as a user browsing (the export time estimate needs them)
        viewer.dims.set_current_step(1, z)
        _wait(app, lambda: not layer.data.busy, 60)
    viewer.status = f"{layer.name}: frame at {viewer.dims.point[0]:g} s"
    render.set_grid(True)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    viewer.reset_view()
    app.processEvents()
    _content(render).grab().save(str(args.out / "render_widget.png"))
    viewer.screenshot(str(args.out / "side_by_side.png"), canvas_only=False)
    train.advanced_box.expand(animate=False)
    for _ in range(10):
        app.processEvents()
        time.sleep(0.05)
    _content(train).grab().save(str(args.out / "train_widget.png"))
    viewer.close()
    print(
        "wrote",
        *(args.out / n for n in ("train_widget.png", "render_widget.png", "side_by_side.png")),
    )


if __name__ == "__main__":
    main()
