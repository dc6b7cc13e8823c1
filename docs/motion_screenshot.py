"""Screenshot of "Show motion" for the README, at 1280 × 800 (run under Xvfb).

    spatimeinr train t_ctc2d_timelapse.tif -o ctc.spatimeinr --time-limit 120
    xvfb-run -a -s "-screen 0 1280x800x24" python docs/motion_screenshot.py ctc.spatimeinr

The window is laid out as ``spatimeinr-napari`` lays it out on a 1280 × 800 screen: the model's
input with the Vectors layer of its motion at frame ``--frame`` (the velocity to the next frame),
zoomed on the image's centre, the Render & Export tab beside it. Writes docs/motion_vectors.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from screenshots import HERE, SIZE, _wait


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a model directory of the fast engine")
    p.add_argument("--frame", type=int, default=10, help="input frame shown")
    p.add_argument("--zoom", type=float, default=1.6, help="zoom on the image's centre")
    p.add_argument("--out", type=Path, default=HERE / "motion_vectors.png")
    args = p.parse_args()

    from qtpy.QtWidgets import QApplication

    from napari_spatimeinr import _napari_launch as launch
    from napari_spatimeinr._widgets.workflow import WorkflowWidget

    viewer = launch.build_viewer(str(args.model))  # the model's input (File → Open)
    launch.fit_to_screen(viewer, SIZE)
    wf = viewer.window._qt_window.findChild(WorkflowWidget)
    render = wf.render
    app = QApplication.instance()
    wf.tabs.setCurrentIndex(wf.TAB_RENDER)
    render.add_model(args.model)
    motion = render.show_motion(True)
    if motion is None:
        raise SystemExit(render.error_label.text())
    md = motion.md
    t0 = float(md.meta.get("origin", (0.0,))[0])
    viewer.dims.set_point(0, t0 + args.frame * md.frame_interval)  # world time of that frame
    _wait(app, lambda: motion.shown == args.frame and not motion.busy, 120)
    viewer.reset_view()
    cam = getattr(viewer, "scene", viewer).camera  # napari >= 0.9: viewer.scene.camera
    cam.zoom *= args.zoom
    _wait(app, lambda: False, 1.0)
    viewer.status = (
        f"{motion.layer.name}: arrows = displacement over one frame x {motion.gain:.3g}, "
        "colour = speed (µm/s)"
    )
    _wait(app, lambda: False, 0.5)
    viewer.window._qt_window.grab().save(str(args.out))
    viewer.close()
    print("wrote", args.out)


if __name__ == "__main__":
    main()
