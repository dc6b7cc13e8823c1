"""The live loss / held-out PSNR plot of the Train widget (pyqtgraph)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QLabel,
    QVBoxLayout,
    QWidget,
)

from ..core.progress import Progress

if TYPE_CHECKING:
    pass


WAITING = "Waiting for the first training steps…"


LOSS_COLOR = "#4c9be8"


PSNR_COLOR = "#f0a030"


class LossPlot(QWidget):
    """Live training curves: loss (log axis, left) and PSNR (dB, right axis) against step.

    pyqtgraph, not matplotlib: a Qt-native plot redraws a few hundred points in about a millisecond
    on the GUI thread (an Agg canvas re-rasterises the whole figure on every update), follows the
    dock's size, and its log axis needs no special-casing. Until two steps have been logged the plot
    is hidden behind a one-line "waiting" note, so no empty axes are shown.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        import pyqtgraph as pg

        self.waiting = QLabel(WAITING)
        self.waiting.setWordWrap(True)
        self.waiting.setStyleSheet("color: grey;")
        self.graph = pg.PlotWidget(background=None)
        self.graph.setMinimumSize(160, 170)
        self.graph.setMaximumHeight(300)
        item = self.graph.getPlotItem()
        # the loss is drawn as log10(loss) on a left axis labelled in powers of ten; the PSNR has
        # its own linear right axis (a plot-wide log mode would make that one logarithmic too)
        item.getAxis("left").setLogMode(True)
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss", color=LOSS_COLOR)
        item.showAxis("right")
        item.setLabel("right", "PSNR (dB)", color=PSNR_COLOR)
        for side in ("left", "right", "bottom"):
            item.getAxis(side).enableAutoSIPrefix(False)
        item.setMenuEnabled(False)
        item.hideButtons()
        self.psnr_view = pg.ViewBox()
        item.scene().addItem(self.psnr_view)
        item.getAxis("right").linkToView(self.psnr_view)
        self.psnr_view.setXLink(item)
        item.vb.sigResized.connect(self._sync_views)
        self._loss_curve = item.plot(pen=pg.mkPen(LOSS_COLOR, width=1.5), name="loss")
        self._psnr_curve = pg.PlotDataItem(
            pen=pg.mkPen(PSNR_COLOR, width=1.5),
            symbol="o",
            symbolSize=4,
            symbolBrush=PSNR_COLOR,
            symbolPen=None,
        )
        self.psnr_view.addItem(self._psnr_curve)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.waiting)
        lay.addWidget(self.graph)
        self.setToolTip(
            "Training loss (blue, log scale, lower is better) and PSNR on held-back voxels "
            "(orange, dB, right axis, higher is better) against training step."
        )
        self.clear()

    def _sync_views(self) -> None:
        item = self.graph.getPlotItem()
        self.psnr_view.setGeometry(item.vb.sceneBoundingRect())
        self.psnr_view.linkedViewChanged(item.vb, self.psnr_view.XAxis)

    def clear(self) -> None:
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.psnr_steps: list[int] = []
        self.psnr: list[float] = []
        self._loss_curve.setData([], [])
        self._psnr_curve.setData([], [])
        self.waiting.setText(WAITING)
        self._show_graph(False)

    def finish(self) -> None:
        """The run ended: say so if it logged too few steps for a curve (no endless "waiting")."""
        if not self.shown:
            n = len(set(self.steps) | set(self.psnr_steps))
            self.waiting.setText(f"The run logged {n} step(s): too few for a curve.")

    def _show_graph(self, on: bool) -> None:
        self.graph.setVisible(on)
        self.waiting.setVisible(not on)

    @property
    def shown(self) -> bool:
        """Whether the curves are on screen (two steps or more were logged)."""
        return not self.graph.isHidden()

    def add(self, p: Progress) -> None:
        last = max(self.steps[-1:] + self.psnr_steps[-1:], default=-1)
        if p.step < last:  # the next phase (the z decoder trains first, then time): its own curve
            self.clear()
        if p.loss is not None and p.loss > 0:  # a log axis: a zero loss cannot be drawn
            self.steps.append(p.step)
            self.loss.append(float(p.loss))
        if p.psnr is not None:
            self.psnr_steps.append(p.step)
            self.psnr.append(float(p.psnr))
        self._loss_curve.setData(self.steps, np.log10(self.loss))
        self._psnr_curve.setData(self.psnr_steps, self.psnr)
        self.psnr_view.enableAutoRange()
        if len(set(self.steps) | set(self.psnr_steps)) >= 2 and not self.shown:
            self._show_graph(True)
