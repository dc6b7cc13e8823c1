"""Longest pause of napari's GUI thread while the plugin trains and while a lazy layer is browsed.

A QTimer ticks every 10 ms on the GUI thread; the longest gap between two ticks is the longest time
the GUI could not react (a frozen window). Measured in the dock ``spatimeinr-napari`` opens (window
1280 × 800):

1. training: the Train tab's Train button (its worker thread, previews every ``--preview-every``
   seconds, the live plot) until the time limit ends the run and Render & Export opens;
2. browsing: "Add layer" (t×2) of the trained model, then the T slider and the Z slider stepped
   every 100 ms, the way a user scrubs through a movie (slices computed off the GUI thread).

Stacks: the real files in /work/shared/data when there (``t_ctc2d`` (30, 1, 256, 256) and
``tz_yeast`` (30, 17, 144, 224)), else synthetic nuclei of those shapes. Run under Xvfb:

    xvfb-run -a -s "-screen 0 1280x800x24" python benchmarks/gui_pause.py --train-seconds 30

Prints one line per stack and phase; ``--json FILE`` appends the same as JSON lines. Exits 1 when a
pause exceeds ``--limit`` ms (200 by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("SPATIMEINR_DATA", "/work/shared/data"))
STACKS = {
    "t_ctc2d": ("t_ctc2d_timelapse.tif", (30, 1, 256, 256)),
    "tz_yeast": ("tz_yeast_mito_nellie.tif", (30, 17, 144, 224)),
}


class PauseMeter:
    """Gaps between the ticks of a 10 ms QTimer on the GUI thread.

    With ``trace_ms``, a watchdog thread prints where the GUI thread is (its Python stack) whenever
    no tick came for that long: a stack inside a slot names the culprit; a stack at the event
    loop means the thread waits outside Python (drawing, or for the GIL held by a worker).
    """

    def __init__(self, interval_ms: int = 10, trace_ms: float = 0.0):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.reset()
        self.timer.start()
        import gc

        gc.callbacks.append(self._gc)
        if trace_ms > 0:
            import threading

            main = threading.main_thread().ident
            threading.Thread(target=self._watch, args=(main, trace_ms / 1000), daemon=True).start()

    def _watch(self, main: int | None, limit: float) -> None:
        import sys
        import traceback

        reported = 0.0
        while True:
            time.sleep(limit / 4)
            late = time.perf_counter() - self.last
            if late > limit and self.last != reported:
                reported = self.last
                frame = sys._current_frames().get(main)
                stack = "".join(traceback.format_stack(frame, limit=40)) if frame else "?"
                print(f"--- GUI thread late by {late * 1000:.0f} ms:\n{stack}", flush=True)

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.gaps: list[float] = []
        self.gc_ms: list[float] = []  # Python's garbage collections (any thread), in ms

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif info.get("generation") == 2:
            self.gc_ms.append((time.perf_counter() - self._gc_t0) * 1000)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.last = now

    def summary(self) -> dict:
        import numpy as np

        self._tick()  # the time since the last tick counts too
        g = np.asarray(self.gaps) * 1000
        return {
            "max_ms": round(float(g.max()), 1),
            "p99_ms": round(float(np.percentile(g, 99)), 1),
            "over_100ms": int((g > 100).sum()),
            "ticks": len(g),
            # full (generation 2) garbage collections: a pause in any Python code of the process
            "gc2_max_ms": round(max(self.gc_ms, default=0.0), 1),
            "gc2_count": len(self.gc_ms),
        }


def run_until(cond, timeout: float) -> None:
    """Run the Qt event loop (not a processEvents/sleep loop: that would pause it) until ``cond``."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(20)
    end = time.monotonic() + timeout
    poll.timeout.connect(lambda: (cond() or time.monotonic() > end) and loop.quit())
    poll.start()
    loop.exec()
    poll.stop()


def open_stack(viewer, key: str):
    """The real file of ``key`` when present, else synthetic nuclei of its shape."""
    name, shape = STACKS[key]
    path = DATA / name
    if path.is_file():
        viewer.open(str(path), plugin="napari-spatimeinr")
        return f"{path.name} {shape}"
    from napari_spatimeinr._layers import stack_layer_kwargs
    from napari_spatimeinr.data.synthetic import make_nuclei_timelapse

    stack = dataclasses.replace(make_nuclei_timelapse(shape=shape), name=key)
    viewer.add_image(stack.data, **stack_layer_kwargs(stack))
    return f"synthetic {shape}"


def measure(key: str, args) -> list[dict]:
    import napari

    from napari_spatimeinr import _napari_launch as launch
    from napari_spatimeinr._widgets.forms import remove_layers
    from napari_spatimeinr._widgets.workflow import WorkflowWidget

    viewer = napari.Viewer(title="gui pause benchmark")
    source = open_stack(viewer, key)
    _, wf = viewer.window.add_plugin_dock_widget(launch.PLUGIN, "SpatimeINR")
    assert isinstance(wf, WorkflowWidget)
    launch.fit_to_screen(viewer, (1280, 800))
    tr, rd = wf.train, wf.render
    out = Path(tempfile.mkdtemp(prefix="gui-pause-")) / f"{key}.spatimeinr"
    tr.out_edit.setText(str(out))
    tr._out_auto = False
    tr.preset_combo.setCurrentText(args.preset)
    tr.device_combo.setCurrentText(args.device)
    tr.time_spin.setValue(args.train_seconds)
    tr.preview_every = args.preview_every
    if not tr.validate():
        raise SystemExit(tr.error_label.text())
    rows = []
    meter = PauseMeter(trace_ms=args.trace)
    run_until(lambda: False, 1.0)  # let the window settle
    if args.model is None:
        meter.reset()
        t0 = time.perf_counter()
        tr.start()
        run_until(lambda: tr.worker is None, args.train_seconds + 900)
        row = {"stack": key, "source": source, "phase": "training", **meter.summary()}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["steps"] = tr.last_progress.step if tr.last_progress else 0
        row["plot_points"] = len(tr.plot.loss)
        row["render_tab_open"] = wf.tabs.currentWidget() is rd
        if tr.error_label.text():
            row["error"] = tr.error_label.text()
        rows.append(row)
    else:
        rd.add_model(args.model)

    inp = viewer.layers[0]
    rows += workflow_steps(viewer, rd, meter, key, source, inp)

    # control: the same slider steps over two in-memory layers (nothing to compute, as much to
    # draw as input + render): the floor set by napari's drawing and the machine's load
    copy = viewer.add_image(
        inp.data.copy(),
        scale=inp.scale,
        translate=inp.translate,
        units=inp.units,
        axis_labels=inp.axis_labels,
        name="copy",
        blending="additive",
    )
    nt, nz = inp.data.shape[:2] if inp.ndim == 4 else (1, 1)
    rows.append(
        {
            "stack": key,
            "source": source,
            "phase": "browsing two in-memory layers (control)",
            **browse(viewer, meter, nt, nz, args.browse_steps),
        }
    )
    remove_layers(viewer, [copy])
    layer = rd.added_layers[-1]
    nt, nz = layer.data.shape[:2]
    row = browse(viewer, meter, nt, nz, args.browse_steps)
    run_until(lambda: not layer.data.busy, 120)  # the last slice shown
    row = {"stack": key, "source": source, "phase": "browsing", **row}
    row["planes_computed"] = layer.data.computations
    rows.append(row)
    meter.timer.stop()
    viewer.close()
    return rows


def step(meter: PauseMeter, action, done, timeout: float = 120.0) -> dict:
    """The longest GUI pauses from ``action`` (run by the event loop, as a click is) until
    ``done()``, and the second after it (layers added in later turns, their first draw)."""
    from qtpy.QtCore import QTimer

    run_until(lambda: False, 0.5)
    meter.reset()
    t0 = time.perf_counter()
    QTimer.singleShot(0, action)
    run_until(lambda: time.perf_counter() - t0 > 0.2 and done(), timeout)
    run_until(lambda: False, 1.0)
    return {**meter.summary(), "seconds": round(time.perf_counter() - t0, 1)}


def workflow_steps(viewer, rd, meter: PauseMeter, key: str, source: str, inp) -> list[dict]:
    """The Render & Export steps of the issue's workflow, one row each: napari adding one layer
    (the control: its own cost), Isotropic + time ×2, Add layer with Show uncertainty, Show
    motion, Side by side, and back to the overlay."""
    import numpy as np

    from napari_spatimeinr._widgets.forms import remove_layers

    rows = []

    def row(phase: str, result: dict) -> None:
        rows.append({"stack": key, "source": source, "phase": phase, **result})

    extra: list = []

    def add_one() -> None:
        extra.append(
            viewer.add_image(
                np.zeros(inp.data.shape, np.float32), scale=inp.scale, units=inp.units, name="one"
            )
        )

    row("napari adds one layer (control)", step(meter, add_one, lambda: bool(extra)))
    remove_layers(viewer, extra)

    def settings() -> None:
        rd.iso_btn.click()
        rd.scale_t.setValue(2.0)
        rd.uncertainty_check.setChecked(True)

    row("Isotropic, time x2", step(meter, settings, lambda: rd._probe_worker is None))

    def busy() -> bool:
        layers = [*rd.added_layers, *rd.uncertainty_layers]
        return not layers or any(ly.data.busy for ly in layers)

    row("Add layer (+ uncertainty)", step(meter, rd.add_btn.click, lambda: not busy()))
    row(
        "Show motion",
        step(
            meter,
            lambda: rd.motion_check.setChecked(True),
            lambda: rd.motion is not None and rd.motion.shown is not None,
        ),
    )
    row("Side by side", step(meter, rd.grid_btn.click, lambda: rd.grid().enabled and not busy()))
    row("Back to overlay", step(meter, rd.grid_btn.click, lambda: not rd.grid().enabled))
    return rows


def browse(viewer, meter: PauseMeter, nt: int, nz: int, n: int) -> dict:
    """Step the T slider, then the Z slider, every 100 ms (``n`` steps each at most)."""
    from qtpy.QtCore import QTimer

    steps = [(0, i) for i in range(min(nt, n))]
    steps += [(1, i) for i in range(min(nz, n))] if nz > 1 else []
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(1, 0)
    run_until(lambda: False, 0.5)
    it = iter(steps)
    done: list[bool] = []

    def step() -> None:
        try:
            axis, i = next(it)
        except StopIteration:
            done.append(True)
            return
        viewer.dims.set_current_step(axis, i)

    stepper = QTimer()
    stepper.setInterval(100)
    stepper.timeout.connect(step)
    meter.reset()
    t0 = time.perf_counter()
    stepper.start()
    run_until(lambda: bool(done), 600)
    stepper.stop()
    return {
        **meter.summary(),
        "seconds": round(time.perf_counter() - t0, 1),
        "slider_steps": len(steps),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    p.add_argument("--train-seconds", type=float, default=30.0)
    p.add_argument("--preview-every", type=float, default=2.0, help="seconds between previews")
    p.add_argument("--preset", default="fast", choices=("fast", "paper"))
    p.add_argument("--device", default="auto")
    p.add_argument("--browse-steps", type=int, default=40, help="slider steps per axis")
    p.add_argument("--limit", type=float, default=200.0, help="longest pause allowed (ms)")
    p.add_argument("--json", type=Path, help="append the results to this JSON-lines file")
    p.add_argument("--model", type=Path, help="browse this trained model (skip training)")
    p.add_argument(
        "--trace", type=float, default=0.0, help="print the GUI thread's stack when late (ms)"
    )
    args = p.parse_args()

    worst = 0.0
    for key in args.stacks:
        for row in measure(key, args):
            worst = max(worst, row["max_ms"])
            print(json.dumps(row), flush=True)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"longest GUI pause: {worst:.0f} ms (limit {args.limit:.0f} ms)")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
