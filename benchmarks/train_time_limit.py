"""How long the Train tab takes, click to model saved, against its time limit (run under Xvfb).

    xvfb-run -a -s "-screen 0 1280x800x24" python benchmarks/train_time_limit.py --limit 20
    xvfb-run -a -s "-screen 0 1280x800x24" python benchmarks/train_time_limit.py --limit 30 \\
        --shape 30 17 144 224

Trains the synthetic nuclei of ``--shape`` from the Train tab (fast preset, preview on) and prints
the seconds from the click to the first progress record, to the last one and to ``model_ready``, and
when each phase of the run began (from the progress messages).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=float, default=20.0, help="time limit (s)")
    p.add_argument("--shape", type=int, nargs=4, default=(12, 12, 64, 64), help="T Z Y X")
    p.add_argument("--no-preview", action="store_true")
    args = p.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_spatimeinr import _napari_launch as launch
    from napari_spatimeinr._layers import stack_layer_kwargs
    from napari_spatimeinr.data.synthetic import make_nuclei_timelapse

    viewer = napari.Viewer(title="train time limit")
    stack = make_nuclei_timelapse(shape=tuple(args.shape))
    viewer.add_image(stack.data, **stack_layer_kwargs(stack))
    _, wf = viewer.window.add_plugin_dock_widget(launch.PLUGIN, "SpatimeINR")
    tr = wf.train
    tr.out_edit.setText(str(Path(tempfile.mkdtemp()) / "m.spatimeinr"))
    tr._out_auto = False
    tr.time_spin.setValue(args.limit)
    tr.preview_check.setChecked(not args.no_preview)
    app = QApplication.instance()
    marks: dict[str, float] = {}
    phases: list[tuple[float, str]] = []
    tr.model_ready.connect(lambda _p: marks.setdefault("ready", time.perf_counter()))
    shown = tr._on_progress

    def on_progress(rec, limit):
        now = time.perf_counter()
        marks.setdefault("first", now)
        kind = (rec.message or "").split(":")[0].split(" ")[0]
        if not phases or phases[-1][1] != kind:
            phases.append((now, kind))
        if rec.done:
            marks["done"] = now
        shown(rec, limit)

    tr._on_progress = on_progress
    t0 = time.perf_counter()
    tr.start()
    while "ready" not in marks and time.perf_counter() - t0 < 3 * args.limit + 300:
        app.processEvents()
        time.sleep(0.01)
    took = {k: round(v - t0, 1) for k, v in marks.items()}
    print(f"limit {args.limit:g} s, shape {tuple(args.shape)}: {took}", flush=True)
    for t, kind in phases:
        print(f"  {t - t0:6.1f} s  {kind}")
    over = (marks.get("ready", time.perf_counter()) - t0) / args.limit - 1
    print(f"overrun: {100 * over:+.0f}%")
    viewer.close()


if __name__ == "__main__":
    main()
