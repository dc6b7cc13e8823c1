"""The Train widget's live preview: the plane in view rendered from the latest checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from superqt.utils import create_worker

from .. import api
from .forms import (
    remove_layers,
)
from .processes import compute

if TYPE_CHECKING:
    pass


class LivePreview:
    """Mixin of :class:`~.train.TrainWidget`: the preview layer, filled from checkpoints while training runs."""

    # -- preview ------------------------------------------------------------------------------------
    def _view_tz(self) -> tuple[int, int]:
        """Input frame and depth index of the sliders' position, on the training layer."""
        layer = self._train_layer
        axes = self.axes_edit.text().upper()
        try:
            d = layer.world_to_data(self.viewer.dims.point)
        except Exception:  # pragma: no cover - layer removed meanwhile
            return 0, 0
        coord = dict(zip(axes, d, strict=False))
        return int(round(coord.get("T", 0.0))), int(round(coord.get("Z", 0.0)))

    def maybe_preview(self) -> None:
        """Render the slice in view from the newest checkpoint (once per checkpoint, in a worker).

        Only the slider position is read here; opening the model, planning and rendering run in
        the worker, so the GUI thread never waits for them.
        """
        out = self.model_dir
        if (
            out is None
            or self.worker is None
            or not self.preview_check.isChecked()
            or self._preview_worker is not None
            or self._train_layer is None
            or self._grid_on()
        ):
            return
        ckpt = out / "model.pt"
        try:
            stamp = ckpt.stat().st_mtime_ns
        except OSError:
            return
        if stamp == self._preview_stamp:
            return
        self._preview_stamp = stamp
        t, z = self._view_tz()

        def run() -> Any:
            md = api.open_model(out)
            nt, nz, ny, nx = md.shape
            tt, zz = min(max(t, 0), nt - 1), min(max(z, 0), nz - 1)
            plan = api.plan_render(md, 1.0, (1.0, 1.0, 1.0), (tt, tt), (zz, zz + 1, 0, ny, 0, nx))
            [plane] = compute([api.render_plan(plan)[0, 0]])  # in the render process
            return plane, md, (tt, zz)

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda r: self._show_preview(*r))
        worker.finished.connect(self._preview_done)
        self._preview_worker = worker
        worker.start()

    def _grid_on(self) -> bool:
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9; viewer.grid before
        grid = canvas.grid if canvas is not None and hasattr(canvas, "grid") else self.viewer.grid
        return bool(grid.enabled)

    def _preview_done(self) -> None:
        self._preview_worker = None

    def remove_preview(self) -> None:
        """Take the preview layer out of the viewer (training ended, or the side-by-side view)."""
        layer, self._preview_layer = self._preview_layer, None
        if layer is not None and layer in self.viewer.layers:
            remove_layers(self.viewer, [layer])
            if self._train_layer in self.viewer.layers:  # its controls, not an empty panel
                self.viewer.layers.selection.active = self._train_layer

    def _add_preview_layer(self, name: str, shape: tuple[int, ...]) -> Any:
        """The preview layer, added when Train is pressed: black (additive) until the first plane.

        Adding a layer (napari's layer controls, a vispy visual and its shaders) holds the GUI
        thread for a few hundred ms on a software-OpenGL canvas; done here, that happens once at
        the click, and each preview during training only swaps the layer's data.
        """
        layer = self._train_layer
        if layer is None or self.worker is None or self._grid_on():  # training over already
            return None
        self.remove_preview()  # one preview at a time
        ny, nx = shape[-2:]
        preview = self.viewer.add_image(
            np.zeros((ny, nx), np.float32),
            name=f"{name} preview (waiting for the first checkpoint)",
            scale=tuple(layer.scale[-2:]),
            translate=tuple(layer.translate[-2:]),
            contrast_limits=tuple(layer.contrast_limits),
            blending="additive",
            colormap="magenta",
            # as the input's: napari warns about mixed units otherwise
            axis_labels=tuple(getattr(layer, "axis_labels", ("y", "x")))[-2:],
            units=tuple(getattr(layer, "units", ("µm", "µm")))[-2:],
            metadata={"preview": {}},
        )
        self.viewer.layers.selection.active = layer  # the input's controls stay in view
        self._preview_layer = preview
        return preview

    def _show_preview(self, plane: Any, md: Any, tz: tuple[int, int]) -> None:
        if self.worker is None or self._grid_on():  # training ended, or side by side: no preview
            return
        step = self.last_progress.step if self.last_progress is not None else 0
        layer = self._preview_layer
        if layer is None or layer not in self.viewer.layers:  # switched on during training
            layer = self._add_preview_layer(md.name, md.shape)
            if layer is None:
                return
        layer.data = plane
        if not layer.metadata["preview"]:  # the first plane: the model's own intensity range
            layer.contrast_limits = (md.norm.low, md.norm.high)
            layer.name = f"{md.name} preview"
        layer.metadata["preview"] = {"t": tz[0], "z": tz[1], "step": step}
        self.status.setToolTip(f"Preview: frame {tz[0]}, depth {tz[1]}, step {step}")
        self.preview_ready.emit(layer)
