"""Render & Export: the layers it adds to the viewer (render, uncertainty, motion arrows), one event-loop turn at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer

from .. import api
from .._layers import browse_plan, model_input_kwargs, render_layer_kwargs
from ..core.errors import SpatimeINRError
from .async_layer import AsyncArray, add_async_layer
from .forms import (
    layer_meta,
    remove_layers,
)
from .models import registry
from .render_common import APPLY_OWN, MOTION_TIP, ROI_VIEW, ROI_WHOLE

if TYPE_CHECKING:
    pass


class RenderLayers:
    """Mixin of :class:`~.render.RenderWidget`: Add layer, Show uncertainty, Show motion, the input layer, short garbage collections while they show."""

    # -- layers ---------------------------------------------------------------------------------
    # -- motion ---------------------------------------------------------------------------------
    def _motion_model_changed(self, md: Any) -> None:
        """The check box is offered for models with motion; a shown field follows the model."""
        from ..engines.fast.velocity import has_motion

        ok = md is not None and has_motion(md) and md.shape[0] > 1
        self.motion_check.setEnabled(ok)
        self.motion_check.setToolTip(
            MOTION_TIP
            if ok or md is None
            else f"{MOTION_TIP}\nThis model has no motion: it was not trained with the fast engine."
        )
        if self.motion is not None and (
            md is None or Path(self.motion.path) != Path(md.path).resolve()
        ):
            keep = self.motion_check.isChecked()
            self.show_motion(False)
            if ok and keep:
                self.show_motion(True)
        if not ok and self.motion_check.isChecked():
            self.motion_check.setChecked(False)

    def show_motion(self, on: bool) -> Any | None:
        """Add (or remove) the motion vectors of the current model; returns the MotionVectors."""
        from .motion_layer import MotionVectors

        if not on:
            if self.motion is not None:
                motion, self.motion = self.motion, None
                motion.close()
            if self.motion_check.isChecked():
                self.motion_check.setChecked(False)
            self.regrid()
            return None
        if self.motion is not None:
            return self.motion
        md = self.model()
        if md is None:
            self._fail("No model: train one in the Train widget or open a model folder.")
            self.motion_check.setChecked(False)
            return None
        try:
            from ..engines.fast.velocity import check_motion

            check_motion(md)
        except SpatimeINRError as err:
            self._fail(str(err))
            self.motion_check.setChecked(False)
            return None
        self._ensure_input_layer(md)  # the time axis and the physical frame of reference
        self._hold_gc()
        self.motion = MotionVectors(self.viewer, md, parent=self)
        self.motion.failed.connect(self._fail)
        if not self.motion_check.isChecked():
            self.motion_check.setChecked(True)
        self.status.setText(
            f"Motion of {md.name!r}: arrows every {self.motion.step} voxels, following the time "
            "slider (velocity from the frame in view to the next)."
        )
        self.regrid()
        return self.motion

    def _layers_changed(self, *_: Any) -> None:
        if self.motion is not None and self.motion.layer not in self.viewer.layers:
            self.show_motion(False)  # the user deleted the layer: the box follows
        if self._gc_held:
            self._release_gc()
        for ly in self.viewer.layers:  # models opened with File → Open
            path = layer_meta(ly).get("model_dir")
            if path and Path(path).is_dir():
                registry().add(path)
        from napari.layers import Image, Shapes

        chosen = self.apply_combo.currentText()
        self._apply_errors.clear()  # a layer of the same name may be another image now
        names = [
            ly.name
            for ly in self.viewer.layers
            if isinstance(ly, Image)
            and not ly.rgb
            and not isinstance(ly.data, AsyncArray)
            and "preview" not in ly.metadata
        ]
        self.apply_combo.blockSignals(True)
        self.apply_combo.clear()
        self.apply_combo.addItem(APPLY_OWN)
        self.apply_combo.addItems(names)
        if self.apply_combo.findText(chosen) >= 0:
            self.apply_combo.setCurrentText(chosen)
        self.apply_combo.blockSignals(False)
        current = self.roi_combo.currentText()
        self.roi_combo.blockSignals(True)
        self.roi_combo.clear()
        self.roi_combo.addItems([ROI_WHOLE, ROI_VIEW])
        self.roi_combo.addItems(
            [f"shapes: {ly.name}" for ly in self.viewer.layers if isinstance(ly, Shapes)]
        )
        if self.roi_combo.findText(current) >= 0:
            self.roi_combo.setCurrentText(current)
        self.roi_combo.blockSignals(False)

    def _hold_gc(self) -> None:
        """Short garbage collections while this widget's layers are shown (:mod:`.quiet_gc`).

        A full collection walks every object of the process: with torch and a few layers that
        took 300-700 ms of the GUI thread, in the middle of adding a layer
        (``benchmarks/gui_pause.py``). While the renders, their uncertainty or the motion are
        shown, the objects alive when they were added are left out of collections; released when
        they are all gone (:meth:`_layers_changed`).
        """
        from . import quiet_gc

        if not self._gc_held:
            self._gc_held = True
            quiet_gc.hold()

    def _release_gc(self) -> None:
        from . import quiet_gc

        live = [
            ly for ly in (*self.added_layers, *self.uncertainty_layers) if ly in self.viewer.layers
        ]
        if self._gc_held and not live and self.motion is None:
            self._gc_held = False
            quiet_gc.release()

    def add_layer(self) -> Any | None:
        """Add the render as a lazy layer computed off the GUI thread; returns the layer."""
        self._hold_gc()
        try:
            plan = self.plan()
        except SpatimeINRError as err:
            self._fail(str(err))
            return None
        try:
            browsed = browse_plan(plan)  # one plane per chunk: a slider step computes one plane
        except SpatimeINRError as err:  # refused by the limits gate before any allocation
            self._fail(str(err))
            return None
        if plan.channel_dirs:  # a multi-channel model: one layer per channel
            return self._add_channel_layers(plan)
        self._last_channels = []
        md = api.open_model(plan.model_dir)
        self._ensure_input_layer(md)
        kw = render_layer_kwargs(plan, md)
        key = self._plan_key(plan)
        plan = browsed
        # the layer's task graph, built in the background when the settings changed (thousands
        # of planes take a few hundred ms to describe); built here only if not ready yet
        pre = self._prebuilt.get(key, {})
        self._unc_prebuilt = pre.get("uncertainty")
        layer = add_async_layer(
            self.viewer,
            pre.get("render") if pre.get("render") is not None else api.render_plan(plan),
            on_error=self._fail,
            processes=True,  # slices computed in the render process: napari never waits
            **kw,
        )
        self.added_layers.append(layer)
        self._last_browse = (browsed, md)
        self._follow_time(md)
        self.status.setText(
            f"Added {kw['name']!r}: each slice is computed when you first show it, then kept."
        )
        if self.uncertainty_check.isChecked():
            # in the next turn of the event loop: napari builds a layer's controls and visual on
            # the GUI thread (a few hundred ms each); one layer per turn keeps every pause short
            QTimer.singleShot(0, self._add_uncertainty_later)
        else:
            self.regrid()
        return layer

    def _add_channel_layers(self, plan: Any) -> Any | None:
        """One lazy layer per channel of a multi-channel model, each in its channel's colour
        (additive, as napari shows the channels of one image); returns the first."""
        from dataclasses import replace

        from .._layers import channel_layer_kwargs

        self._last_channels = []
        first = None
        for path in plan.channel_dirs:
            sub = replace(plan, model_dir=Path(path), channel_dirs=())
            try:
                browsed = browse_plan(sub)
            except SpatimeINRError as err:
                self._fail(str(err))
                return None
            md = api.open_model(path)
            self._ensure_input_layer(md)
            layer = add_async_layer(
                self.viewer,
                api.render_plan(browsed),
                on_error=self._fail,
                processes=True,
                **channel_layer_kwargs(render_layer_kwargs(sub, md), md),
            )
            self.added_layers.append(layer)
            self._last_channels.append((browsed, md))
            self._last_browse = (browsed, md)
            first = first or layer
        names = ", ".join(md.meta["channel"]["name"] for _, md in self._last_channels)
        self.status.setText(
            f"Added {len(self._last_channels)} channel layers ({names}): each slice is computed "
            "when you first show it, then kept."
        )
        if self.uncertainty_check.isChecked():
            QTimer.singleShot(0, self._add_uncertainty_later)
        else:
            self.regrid()
        return first

    def _add_uncertainty_later(self) -> None:
        live = [ly for ly in self.added_layers if ly in self.viewer.layers]
        if live and self.uncertainty_check.isChecked():
            self.add_uncertainty_layer()

    def add_uncertainty_layer(self) -> Any | None:
        """Add the uncertainty map of the last render layer as a lazy layer (computed off the GUI
        thread like the render); returns it, or None (with the reason shown) when it cannot."""
        from .._layers import uncertainty_layer_kwargs
        from ..render.lazy import check_uncertainty

        if self._last_browse is None:
            self.status.setText("Add a render layer first: its uncertainty is shown with it.")
            return None
        if getattr(self, "_last_channels", None):  # one uncertainty layer per channel
            from .._layers import channel_layer_kwargs

            first = None
            for plan, md in self._last_channels:
                try:
                    check_uncertainty(md)
                    darr = api.render_plan(plan, uncertainty=True)
                except SpatimeINRError as err:
                    self._fail(str(err))
                    return None
                kw = channel_layer_kwargs(uncertainty_layer_kwargs(plan, md), md, colormap=False)
                layer = add_async_layer(
                    self.viewer, darr, on_error=self._fail, processes=True, **kw
                )
                self.uncertainty_layers.append(layer)
                first = first or layer
            self.regrid()
            return first
        plan, md = self._last_browse
        try:
            check_uncertainty(md)
            darr = self._unc_prebuilt
            self._unc_prebuilt = None
            if darr is None or tuple(darr.shape) != tuple(plan.shape):
                darr = api.render_plan(plan, uncertainty=True)
        except SpatimeINRError as err:
            self._fail(str(err))
            return None
        layer = add_async_layer(
            self.viewer,
            darr,
            on_error=self._fail,
            processes=True,
            **uncertainty_layer_kwargs(plan, md),
        )
        self.uncertainty_layers.append(layer)
        self.regrid()
        return layer

    def _uncertainty_toggled(self, on: bool) -> None:
        if on:
            live = [ly for ly in self.added_layers if ly in self.viewer.layers]
            shown = [ly for ly in self.uncertainty_layers if ly in self.viewer.layers]
            if live and not shown:
                self.add_uncertainty_layer()
            return
        remove_layers(
            self.viewer, [ly for ly in self.uncertainty_layers if ly in self.viewer.layers]
        )
        self.uncertainty_layers.clear()
        self.regrid()

    def _follow_time(self, md: Any) -> None:
        """The time under the T slider, in seconds and between which measured frames, in napari's
        text overlay (from the input layer: its T scale and origin are the model's frames)."""
        from .time_readout import TimeReadout

        inp = self.input_layer(md)
        if inp is None or inp.ndim < 3:
            return
        if getattr(self, "time_readout", None) is None:
            self.time_readout = TimeReadout(self.viewer)
        self.time_readout.follow(float(inp.translate[0]), float(inp.scale[0]), int(md.shape[0]))

    def _ensure_input_layer(self, md: Any) -> None:
        if self.input_layer(md) is None:
            self.viewer.add_image(md.stack().data, **model_input_kwargs(md))

    def input_layer(self, md: Any) -> Any | None:
        """The image layer of the stack ``md`` renders (by its model folder, else its name)."""
        from napari.layers import Image

        path = str(Path(md.path).resolve())
        images = [
            ly
            for ly in self.viewer.layers
            if isinstance(ly, Image) and not isinstance(ly.data, AsyncArray)
        ]
        for ly in images:
            if layer_meta(ly).get("model_dir") == path:
                return ly
        return next((ly for ly in images if ly.name == md.name), None)
