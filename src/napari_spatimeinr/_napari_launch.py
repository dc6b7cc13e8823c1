"""``spatimeinr-napari``: open napari with the plugin's widgets and a stack (the sample by default)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PLUGIN = "napari-spatimeinr"
SAMPLE = "nuclei_timelapse"
#: the docks opened: one, with the workflow (Train → Render & Export → Quality control) as tabs
WIDGETS = ("SpatimeINR",)
#: width of the dock column: at most this fraction of the window, within these bounds (px)
DOCK_FRACTION, DOCK_MIN, DOCK_MAX = 0.32, 340, 480


def fit_to_screen(viewer, size: tuple[int, int] | None = None) -> None:
    """Size the window to the screen's free area (or ``size``), give the dock a column, show the data.

    napari opens at its last size (or Qt's default), which can be larger than a laptop screen; the
    camera was set before the docks took their width, so the data was partly out of view.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication, QDockWidget

    win = viewer.window._qt_window
    if size is None:
        screen = win.screen() or QApplication.primaryScreen()
        if screen is not None:
            free = screen.availableGeometry()
            frame = win.frameGeometry().size() - win.geometry().size()  # title bar and borders
            win.resize(free.width() - frame.width(), free.height() - frame.height())
            win.move(free.topLeft())
    else:
        win.resize(*size)
    docks = [
        d
        for d in win.findChildren(QDockWidget)
        if "spatimeinr" in d.windowTitle().lower() and not d.isHidden()
    ]
    if docks:
        width = int(min(DOCK_MAX, max(DOCK_MIN, DOCK_FRACTION * win.width())))
        win.resizeDocks(docks, [width] * len(docks), Qt.Orientation.Horizontal)
    QApplication.processEvents()
    viewer.reset_view()


def build_viewer(path: str | None = None, show: bool = True):
    """A napari viewer with the sample (or ``path``) loaded and the plugin's dock, fitting the screen."""
    import napari

    viewer = napari.Viewer(show=show, title="napari-spatimeinr")
    if path:
        viewer.open(path, plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, SAMPLE)
    for name in WIDGETS:
        viewer.window.add_plugin_dock_widget(PLUGIN, name)
    if show:
        fit_to_screen(viewer)
    return viewer


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spatimeinr-napari", description=__doc__)
    p.add_argument("path", nargs="?", help="stack or model directory to open (default: the sample)")
    p.add_argument(
        "--screenshot", metavar="PNG", help="save a screenshot of the window and quit (for checks)"
    )
    args = p.parse_args(argv)
    import napari

    viewer = build_viewer(args.path)
    if args.screenshot:
        from qtpy.QtCore import QTimer

        def shoot():
            viewer.screenshot(args.screenshot, canvas_only=False)
            viewer.close()

        QTimer.singleShot(1500, shoot)
    napari.run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
