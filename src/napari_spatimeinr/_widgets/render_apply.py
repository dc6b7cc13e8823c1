"""Render & Export: the model applied to another image layer (its normalization and motion computed in a worker)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from superqt.utils import create_worker

from .. import api
from ..core.errors import SpatimeINRError
from ..data.stack import Stack4D
from .forms import (
    layer_axes,
    layer_meta,
    layer_physical,
    layer_to_stack,
)
from .render_common import APPLY_OWN, Pending

if TYPE_CHECKING:
    pass


class ApplyToLayer:
    """Mixin of :class:`~.render.RenderWidget`: 'Apply to' another layer of the viewer."""

    # -- applying the model to another stack -------------------------------------------------------
    def apply_layer(self) -> Any | None:
        """The image layer chosen in "Apply to", or None for the model's own stack."""
        name = self.apply_combo.currentText()
        if not name or name == APPLY_OWN or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def _apply_key(self, md: Any, layer: Any) -> tuple[str, str]:
        return (str(Path(md.path).resolve()), str(layer.name))

    def layer_stack(self, layer: Any, md: Any) -> Any:
        """The layer as a TZYX stack for ``md`` (a 3D layer is a 2D time-lapse for a 2D+t model)."""
        axes = layer_axes(layer)
        if layer.ndim == 3 and not layer_meta(layer).get("axes") and md.shape[1] == 1:
            axes = "TYX"
        vs, fi = layer_physical(layer, axes)
        stack = layer_to_stack(layer, axes, vs, fi)
        if not isinstance(stack, Stack4D):
            raise SpatimeINRError(
                f"{layer.name!r} has {stack.n} channels: a model applies to one channel at a "
                "time; split the channels (right-click the layer → Split Stack) and pick one."
            )
        return stack

    def _apply_changed(self, *_: Any) -> None:
        """Prepare the chosen layer for the model (normalization, flows) off the GUI thread."""
        md, layer = self.model(), self.apply_layer()
        key = self._apply_key(md, layer) if md is not None and layer is not None else None
        if key is None or key in self._applied or key in self._apply_errors:
            try:
                target = self.target()
            except SpatimeINRError:
                target = None
            if target is not None:
                self._sync_t_range(target.shape[0])
            self.update_info()
            return
        if self.apply_worker is not None:  # one at a time; the choice is looked at again after
            self.update_info()
            return
        try:
            stack = self.layer_stack(layer, md)
            from ..render.apply import compatibility

            compatibility(md, stack)  # an impossible pair is said at once, not in the worker
        except SpatimeINRError as err:
            self._apply_errors[key] = str(err)
            self.update_info()
            return

        def run() -> Any:
            from ..render.apply import apply_model

            return apply_model(md, stack)

        def failed(err: BaseException) -> None:
            self._apply_errors[key] = str(err)

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda applied: self._on_applied(key, applied))
        worker.errored.connect(failed)
        worker.finished.connect(self._on_apply_finished)
        self.apply_worker = worker
        self.status.setText(f"Preparing {layer.name!r} for this model (normalization, motion)…")
        worker.start()
        self.update_info()

    def _on_applied(self, key: tuple[str, str], applied: Any) -> None:
        self._applied[key] = str(applied.model_dir.path)
        self._sync_t_range(applied.model_dir.shape[0])
        note = " ".join(applied.warnings)
        self.status.setText(f"{key[1]!r} is ready for this model." + (f" {note}" if note else ""))

    def _on_apply_finished(self) -> None:
        self.apply_worker = None
        self._apply_changed()  # the choice may have changed meanwhile

    def target(self) -> Any | None:
        """The model directory that renders the current choice: the model, or the model applied
        to the chosen layer (raises while that is still being prepared)."""
        md = self.model()
        layer = self.apply_layer()
        if md is None or layer is None:
            return md
        key = self._apply_key(md, layer)
        if key in self._apply_errors:
            raise SpatimeINRError(self._apply_errors[key])
        path = self._applied.get(key)
        if path is None:
            raise Pending(
                f"Preparing {layer.name!r} for this model (its normalization and motion); Add "
                "layer and Export are available when it is ready."
            )
        return api.open_model(path)
