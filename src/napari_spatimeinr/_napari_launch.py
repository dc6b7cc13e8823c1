"""``spatimeinr-napari``: open napari with the plugin's widgets and a stack (the sample by default)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PLUGIN = "napari-spatimeinr"
SAMPLE = "nuclei_timelapse"
WIDGETS = ("Train", "Render & Export")


def build_viewer(path: str | None = None, show: bool = True):
    """A napari viewer with the sample (or ``path``) loaded and the Train and Render widgets docked."""
    import napari

    viewer = napari.Viewer(show=show, title="napari-spatimeinr")
    if path:
        viewer.open(path, plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, SAMPLE)
    for name in WIDGETS:
        viewer.window.add_plugin_dock_widget(PLUGIN, name)
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
