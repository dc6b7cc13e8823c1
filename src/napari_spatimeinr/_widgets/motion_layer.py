"""The motion a model recovered as a napari Vectors layer that follows the time slider.

:class:`MotionVectors` keeps one Vectors layer for one model: the velocity between the frame in
view and the next (:meth:`napari_spatimeinr.engines.fast.velocity.VelocityField.vectors`) on a grid of every
``step``-th voxel in y and x, where the frame has signal (the flow in empty background is
TV-L1's noise-driven fill-in), at the input's physical scale and origin, so the arrows overlay the
input and its renders in world coordinates. An arrow is the displacement over one frame interval
times a gain fixed when the layer is made (so lengths stay proportional to speed along the movie);
its colour is the speed in µm/s.

Nothing is computed on the GUI thread: the vectors of an interval are computed in the render
process (:func:`.processes.compute`: flows are loaded there once, and pairs that training did not
store are solved there) from a worker thread; while the slider moves only the latest interval
asked for is computed next.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from superqt.utils import create_worker

from .._layers import META_KEY
from ..store.model_dir import ModelDir
from .forms import remove_layers
from .processes import compute

#: about this many arrows across the longer of y and x
ARROWS_ACROSS = 32


def grid_step(shape_yx: tuple[int, int]) -> int:
    """Voxels between arrows in y and x: about :data:`ARROWS_ACROSS` across the image."""
    return max(1, math.ceil(max(shape_yx) / ARROWS_ACROSS))


def _vectors_task(path: str, t: int, step: int) -> np.ndarray:
    from ..engines.fast.velocity import interval_vectors

    return interval_vectors(path, t, step, signal_only=True)


class MotionVectors(QObject):
    """A Vectors layer showing a motion model's velocity at the frame in view."""

    updated = Signal(int)  #: the layer now shows this interval
    failed = Signal(str)

    def __init__(self, viewer: Any, md: ModelDir, parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.md = md
        self.path = str(Path(md.path).resolve())
        _, nz, ny, nx = md.shape
        self.step = grid_step((ny, nx))
        self.shown: int | None = None  # interval on display
        self._wanted: int | None = None
        self._worker: Any = None
        self.gain: float | None = None
        vz, vy, vx = md.voxel_size
        o = [float(v) for v in md.meta.get("origin", (0.0, 0.0, 0.0, 0.0))]
        self.layer = viewer.add_vectors(
            np.zeros((0, 2, 3), np.float32),
            ndim=3,
            name=f"{md.name} motion",
            scale=(vz, vy, vx),
            translate=tuple(o[1:]),
            edge_width=max(1.0, self.step / 5),
            features={"speed_um_per_s": np.zeros(0, np.float32)},
            edge_color="speed_um_per_s",
            edge_colormap="plasma",
            vector_style="arrow",
            axis_labels=("z", "y", "x"),
            units=("µm", "µm", "µm"),
            metadata={
                META_KEY: {
                    "axes": "ZYX",
                    "kind": "motion",
                    "model_dir": self.path,
                    "voxel_size": [vz, vy, vx],
                    "frame_interval": md.frame_interval,
                    "origin": o,
                    "grid_step_yx": self.step,
                }
            },
        )
        self.viewer.dims.events.current_step.connect(self._dims_changed)
        self._dims_changed()

    # -- which interval -------------------------------------------------------------------------
    def interval_in_view(self) -> int:
        """The interval (frame t → t+1) of the frame in view; the last frame shows the last one."""
        n = int(self.md.shape[0]) - 1
        if self.viewer.dims.ndim < 4:
            return 0
        t0 = float(self.md.meta.get("origin", (0.0,))[0])
        frame = (float(self.viewer.dims.point[0]) - t0) / self.md.frame_interval
        return int(min(max(math.floor(frame + 1e-6), 0), n - 1))

    def _dims_changed(self, *_: Any) -> None:
        want = self.interval_in_view()
        if want != self.shown:
            self.request(want)

    # -- computing off the GUI thread -------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def request(self, t: int) -> None:
        """Show interval ``t`` once computed (only the latest request is kept)."""
        self._wanted = int(t)
        if self._worker is None:
            self._start()

    def _start(self) -> None:
        import dask

        t, self._wanted = self._wanted, None
        if t is None:
            return
        part = dask.delayed(_vectors_task, pure=True)(self.path, t, self.step)
        worker = create_worker(lambda: (t, compute([part])[0]), _start_thread=False)
        worker.returned.connect(self._show)
        worker.errored.connect(lambda err: self.failed.emit(f"Motion vectors: {err}"))
        worker.finished.connect(self._finished)
        self._worker = worker
        self.layer.name = f"{self.md.name} motion (computing…)"
        worker.start()

    def _finished(self) -> None:
        self._worker = None
        if self._wanted is not None and self._wanted != self.shown:
            self._start()
        elif self.layer in self.viewer.layers and self.shown is not None:
            self.layer.name = self._name(self.shown)

    def _name(self, t: int) -> str:
        return f"{self.md.name} motion {t}→{t + 1}"

    def _show(self, result: tuple[int, np.ndarray]) -> None:
        t, vec = result
        if self.layer not in self.viewer.layers:
            return
        speed_vox = np.linalg.norm(vec[:, 1], axis=1) if len(vec) else np.zeros(0)
        if self.gain is None:  # the 95th-percentile arrow spans one grid step
            p95 = float(np.percentile(speed_vox, 95)) if len(vec) else 0.0
            self.gain = float(min(50.0, max(1.0, self.step / p95))) if p95 > 0 else 1.0
            self.layer.length = self.gain
        voxel = np.asarray(self.md.voxel_size, np.float32)
        speed = np.linalg.norm(vec[:, 1] * voxel, axis=1) / self.md.frame_interval
        self.layer.data = vec
        self.layer.features = {"speed_um_per_s": speed}
        self.layer.edge_color = "speed_um_per_s"  # recoloured from the new features
        if len(vec) and float(speed.max()) > 0:
            self.layer.edge_contrast_limits = (0.0, float(np.percentile(speed, 99)))
        self.shown = t
        self.layer.refresh()  # the visual follows the new data even when no slider moved
        self.layer.name = self._name(t)
        self.updated.emit(t)

    def close(self) -> None:
        """Stop following the slider and remove the layer."""
        try:
            self.viewer.dims.events.current_step.disconnect(self._dims_changed)
        except (TypeError, ValueError, RuntimeError):  # pragma: no cover - already gone
            pass
        remove_layers(self.viewer, [self.layer])
