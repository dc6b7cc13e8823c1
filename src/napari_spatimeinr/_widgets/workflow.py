"""One dock for the whole workflow: Train → Render & Export → Quality control, as tabs.

Why tabs: three tall forms stacked in napari's dock column leave each a sliver on a 1280 × 800
screen (the Render form got 89 px under Train). One dock with a tab per step gives each step the
whole column height, and each tab scrolls vertically on its own (:func:`.forms.scroll_layout`);
its forms wrap their rows when the column is narrow, so nothing is clipped on the right. The step
the user needs next comes to the front by itself: when a training run saves a model, the Render &
Export tab opens with that model selected. Above the tabs, a "Getting started" line shows while
the viewer has no image to work on.

The step widgets are the same classes as the single-step docks (``Train``, ``Render & Export``,
``Quality control``), reachable as :attr:`WorkflowWidget.train`, ``.render`` and ``.qc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from .qc import QCWidget
from .render import RenderWidget
from .train import TrainWidget

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-spatimeinr"
SAMPLE = "nuclei_timelapse"
GETTING_STARTED = (
    "<b>Getting started:</b> open a 4D stack (File → Open, or drop a file on the window; "
    "a trained model folder opens too) or the sample time-lapse, then Train."
)


class WorkflowWidget(QWidget):
    """The plugin's steps as tabs in one dock (``napari-spatimeinr.workflow``)."""

    TAB_TRAIN, TAB_RENDER, TAB_QC = 0, 1, 2

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.train = TrainWidget(napari_viewer)
        self.render = RenderWidget(napari_viewer)
        self.qc = QCWidget(napari_viewer)

        self.getting_started = QWidget()
        self.start_label = QLabel(GETTING_STARTED)
        self.start_label.setWordWrap(True)
        self.sample_btn = QPushButton("Open the sample")
        self.sample_btn.setToolTip(
            "A synthetic 4D time-lapse of moving nuclei (12 frames × 12 × 64 × 64 voxels)."
        )
        row = QHBoxLayout(self.getting_started)
        row.setContentsMargins(4, 4, 4, 4)
        row.addWidget(self.start_label, 1)
        row.addWidget(self.sample_btn)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setUsesScrollButtons(True)
        self.tabs.addTab(self.train, "1 Train")
        self.tabs.addTab(self.render, "2 Render && Export")
        self.tabs.addTab(self.qc, "3 Quality control")
        for i, tip in enumerate(
            (
                "Train a continuous model of an image layer.",
                "View a model at any scale as a layer, and export it to a file.",
                "Check a method on frames or planes held back, against interpolation baselines.",
            )
        ):
            self.tabs.setTabToolTip(i, tip)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.getting_started)
        lay.addWidget(self.tabs, 1)

        self.sample_btn.clicked.connect(self.open_sample)
        self.train.model_ready.connect(self._model_ready)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._layers_changed)
        self._layers_changed()

    def open_sample(self) -> None:
        self.viewer.open_sample(PLUGIN, SAMPLE)

    def _layers_changed(self, *_: Any) -> None:
        from napari.layers import Image

        empty = not any(isinstance(ly, Image) for ly in self.viewer.layers)
        self.getting_started.setVisible(empty)

    def _model_ready(self, path: str) -> None:
        """A model was saved: bring Render & Export to the front, with the model selected."""
        i = self.render.model_combo.findData(str(Path(path).resolve()))
        if i >= 0:
            self.render.model_combo.setCurrentIndex(i)
        self.tabs.setCurrentIndex(self.TAB_RENDER)
        self.render.status.setText(
            "The model is ready: set the factors, then 'Add layer' to view it or 'Export' to "
            "write it."
        )
