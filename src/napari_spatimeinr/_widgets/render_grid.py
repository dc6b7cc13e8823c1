"""Side by side: input | render (+ motion arrows) | uncertainty in napari's grid, and back to the overlay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer

from .forms import (
    remove_layers,
)
from .render_common import GRID_SPACER, identity

if TYPE_CHECKING:
    pass


class SideBySide:
    """Mixin of :class:`~.render.RenderWidget`: the comparison view (napari's grid, one panel per comparison, the whole field of view in each, cameras linked)."""

    def grid(self) -> Any:
        """napari's grid settings (``viewer.canvas.grid`` since 0.9, ``viewer.grid`` before)."""
        canvas = getattr(self.viewer, "canvas", None)
        return canvas.grid if canvas is not None and hasattr(canvas, "grid") else self.viewer.grid

    def set_grid(self, on: bool) -> None:
        """Side by side: input | render (| uncertainty), the motion arrows over the render; or back
        to one overlay.

        napari puts ``grid.stride`` consecutive layers in each panel. With motion shown the stride
        is 2: the arrows sit right above the render (its panel), and every other panel is padded
        with a hidden, empty spacer layer (hidden layers take no panel of their own). Layers that
        are not part of the comparison are hidden while side by side and shown again after. The
        camera is reset so each panel shows the whole y–x field of view.
        """
        grid = self.grid()
        if on:  # a training preview is transient: it never takes a panel of the grid
            remove_layers(
                self.viewer, [ly for ly in self.viewer.layers if "preview" in ly.metadata]
            )
            self._arrange_grid()
            grid.enabled = True
        else:
            grid.enabled = False
            self._undo_grid()
        self.viewer.reset_view()  # the whole field of view in each panel (or in the overlay)
        if self.grid_btn.isChecked() != bool(on):
            self.grid_btn.blockSignals(True)
            self.grid_btn.setChecked(bool(on))
            self.grid_btn.blockSignals(False)

    def _grid_toggled(self, on: bool) -> None:
        """The Side by side button: the spacer layers the panels need are added first, one per
        turn of the event loop (each costs napari a layer's controls and visual), then the grid
        is switched on (:meth:`set_grid`) in a turn of its own."""
        if not on:
            self.set_grid(False)
            return
        panels = self.grid_panels()
        stride = max((len(p) for p in panels), default=1)
        need = sum(stride - len(p) for p in panels) - len(self._spacers())
        if need > 0:
            self._add_spacer()
            QTimer.singleShot(0, lambda: self._grid_toggled(self.grid_btn.isChecked()))
            return
        QTimer.singleShot(0, lambda: self.grid_btn.isChecked() and self.set_grid(True))

    def grid_panels(self) -> list[list[Any]]:
        """The layers of each side-by-side panel, left to right (what :meth:`set_grid` shows)."""
        live = [ly for ly in self.added_layers if ly in self.viewer.layers]
        uncs = [ly for ly in self.uncertainty_layers if ly in self.viewer.layers]
        md = self._last_browse[1] if self._last_browse is not None else self.model()
        inp = self.input_layer(md) if md is not None else None
        panels = [[inp]] if inp is not None else []
        panels += [[ly] for ly in live] + [[ly] for ly in uncs]
        motion = self.motion.layer if self.motion is not None else None
        if motion is not None and motion in self.viewer.layers and panels:
            panels[len(panels) - len(uncs) - 1].append(motion)  # over the newest render
        return panels

    def _arrange_grid(self) -> None:
        panels = self.grid_panels()
        if not panels:  # nothing of ours: one panel per layer, as napari does
            self.grid().stride = 1
            self.grid().shape = (1, max(1, len(self.viewer.layers)))
            return
        stride = max(len(p) for p in panels)
        spare = self._spacers()  # reused: adding a layer costs napari a GUI pause
        order: list[Any] = []
        for panel in panels:
            order += panel
            for _ in range(stride - len(panel)):
                order.append(spare.pop() if spare else self._add_spacer())
        remove_layers(self.viewer, spare)
        if not self._order_before:  # the overlay's order, restored when switching back
            self._order_before = list(self.viewer.layers)
        ours = {identity(ly) for ly in order}
        for ly in self.viewer.layers:
            if identity(ly) not in ours and ly.visible:
                self._hidden_for_grid.append(ly)
                ly.visible = False
        for dest, ly in enumerate(order):  # our layers first (the left), in panel order
            src = self.viewer.layers.index(ly)
            if src != dest:
                self.viewer.layers.move(src, dest)
        grid = self.grid()
        grid.stride = stride
        grid.shape = (1, len(panels))
        self._select(panels)
        self.status.setText(
            "Side by side: "
            + " | ".join(" + ".join(ly.name for ly in p) for p in panels)
            + (
                f" ({len(self._hidden_for_grid)} other layer(s) hidden until you switch back)"
                if self._hidden_for_grid
                else ""
            )
        )

    def regrid(self) -> None:
        """Side by side is on and its layers changed (render, uncertainty, motion): arrange again."""
        if self.grid().enabled and not self._arranging:
            self._arranging = True
            try:
                self._undo_grid(keep_spacers=True)
                self._arrange_grid()
            finally:
                self._arranging = False

    def _select(self, panels: list[list[Any]]) -> None:
        """The newest render's controls in view (not a spacer's, the last layer added)."""
        live = [ly for ly in self.added_layers if ly in self.viewer.layers]
        pick = live[-1] if live else (panels[0][0] if panels else None)
        if pick is not None:
            self.viewer.layers.selection.active = pick

    def flip(self) -> bool:
        """Input ⇄ render: hide the render layers (and their uncertainty) to see the input in the
        same place, or show them again; returns whether the render is now shown. In the side by
        side view both are shown already: nothing to flip."""
        layers = [
            ly for ly in (*self.added_layers, *self.uncertainty_layers) if ly in self.viewer.layers
        ]
        if not layers or self.grid().enabled:
            self.status.setText("Input ⇄ render: add a render layer (not side by side) first.")
            return False
        show = not any(ly.visible for ly in layers)
        for ly in layers:
            ly.visible = show
        t = self.viewer.dims.point[0] if self.viewer.dims.ndim == 4 else 0.0
        self.status.setText(
            f"Showing the {'render' if show else 'input (as measured)'} at {t:g} s. "
            "Click again to compare."
        )
        return show

    def _add_spacer(self) -> Any:
        """A hidden, empty Points layer that fills a panel's second place (stride 2): in the
        input's dimensions and units (napari warns about layers of mixed units otherwise)."""
        ref = next((ly for ly in self.viewer.layers if ly.ndim >= 2), None)
        kw: dict[str, Any] = {}
        ndim = 2
        if ref is not None:
            ndim = ref.ndim
            kw = {"scale": ref.scale, "translate": ref.translate, "units": ref.units}
            kw["axis_labels"] = ref.axis_labels
        spacer = self.viewer.add_points(
            np.zeros((0, ndim)),
            ndim=ndim,
            name="side-by-side spacer",
            visible=False,
            metadata={GRID_SPACER: True},
            **kw,
        )
        return spacer

    def _spacers(self) -> list[Any]:
        return [ly for ly in self.viewer.layers if ly.metadata.get(GRID_SPACER)]

    def _undo_grid(self, keep_spacers: bool = False) -> None:
        if not keep_spacers:
            remove_layers(self.viewer, self._spacers())
        for ly in self._hidden_for_grid:
            if ly in self.viewer.layers:
                ly.visible = True
        self._hidden_for_grid.clear()
        self.grid().stride = 1
        if keep_spacers:  # arranged again at once: the overlay's order is still the one saved
            return
        before, self._order_before = self._order_before, []
        kept = [ly for ly in before if ly in self.viewer.layers]
        for dest, ly in enumerate(kept):  # layers added meanwhile stay above them
            src = self.viewer.layers.index(ly)
            if src != dest:
                self.viewer.layers.move(src, dest)
        self._select([])
        self.status.setText("Overlay: the layers are drawn over each other again.")
