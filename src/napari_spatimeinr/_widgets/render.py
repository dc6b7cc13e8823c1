"""Render & Export dock widget: view a model at any scale as a lazy layer, and export it.

Pick a model (trained in this session, opened with File → Open, or a folder chosen here), set the
spatial factors (z, y, x) and the temporal factor, optionally a time range and a region (the current
view or the bounding box of a shapes layer). "Add layer" adds the render as a lazy layer whose
slices are computed off the GUI thread (:mod:`.async_layer`), at the physical scale of the output so
it overlays the input; "Side by side" shows the layers in a grid. "Export…" writes the same render
to a file (format from the suffix) chunk by chunk in a worker, with a progress bar and Cancel;
"with uncertainty" (beside the pixel type) writes the render's uncertainty map beside it (``NAME_uncertainty`` +
the same ending), the two files the CLI's ``render -o FILE --uncertainty FILE`` writes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)
from superqt.utils import create_worker

from .. import api
from .._layers import METHOD_LABELS, browse_plan, model_input_kwargs, render_layer_kwargs
from ..core.config import RenderConfig, build
from ..core.coords import spatial_size
from ..core.errors import LimitError, SpatimeINRError, StopRequested
from ..engines.zdecoder import summary as spatial_summary
from ..io.formats import SUPPORTED_WRITE_SUFFIXES, suffix_of
from ..render.lazy import uncertainty_path
from .async_layer import AsyncArray, add_async_layer
from .forms import (
    file_stem,
    fit_width,
    fmt_duration,
    fmt_seconds,
    form_layout,
    job_saved_message,
    layer_axes,
    layer_meta,
    layer_physical,
    layer_source,
    layer_to_stack,
    relax_widths,
    remove_layers,
    save_job_script_file,
    scroll_layout,
)
from .models import registry
from .processes import export_outputs_steps, iterate_in_process

if TYPE_CHECKING:
    import napari

MOTION_TIP = (
    "Add the motion the model recovered as arrows (a Vectors layer) for the frame in view: the "
    "velocity to the next frame, on a grid of points where the frame has signal, at the input's "
    "physical scale; arrow length proportional to speed, colour = speed in µm/s. It follows the "
    "time slider. Models of the fast SpatimeINR engine only (spatimeinr motion MODEL -o FILE "
    "exports the whole field)."
)
ROI_WHOLE = "whole volume"
ROI_VIEW = "current view (y, x)"
SHOW_UNCERTAINTY_TIP = (
    "Also add the render's uncertainty: for every voxel, the error to expect, in the "
    "render's intensity units (bright = the model guessed; dark = measured or well "
    "predicted). Calibrated on the stack's own frames predicted from their neighbours; "
    "shown over the render (additive) or beside it (Side by side). SpatimeINR fast models "
    "of 3 frames or more."
)
UNCERTAINTY_EXPORT_TIP = (
    "Also write the render's uncertainty map (for every voxel, the error to expect, in the "
    "render's intensity units) to a second file beside the render: its name with '_uncertainty' "
    "added (out.tif → out_uncertainty.tif), same format, grid, axes, voxel size, frame interval "
    "and provenance (as 'spatimeinr render --uncertainty FILE'). SpatimeINR fast models of 3 "
    "frames or more."
)
EXPORT_FILTER = (
    "ImageJ TIFF (*.tif *.tiff);;OME-TIFF (*.ome.tif *.ome.tiff);;NIfTI (*.nii.gz *.nii);;"
    "OME-Zarr (*.zarr *.ome.zarr)"
)


def _size(path: Path) -> float:
    """Bytes of a written output: a file, or the files of a folder (OME-Zarr)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


class _FactorSpin(QDoubleSpinBox):
    """A factor box as wide as one for factors up to 64: larger factors are accepted (the limits
    gate refuses absurd ones with their size) without widening the form."""

    hints: tuple[Any, Any] | None = None

    def sizeHint(self) -> Any:  # noqa: N802 - Qt API
        return self.hints[0] if self.hints else super().sizeHint()

    def minimumSizeHint(self) -> Any:  # noqa: N802 - Qt API
        return self.hints[1] if self.hints else super().minimumSizeHint()


def _factor_spin(tip: str) -> QDoubleSpinBox:
    s = _FactorSpin()
    s.setRange(0.05, 64.0)
    s.setDecimals(2)
    s.setSingleStep(0.5)
    s.setValue(1.0)
    s.setPrefix("× ")
    s.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
    s.setToolTip(tip)
    s.hints = (s.sizeHint(), s.minimumSizeHint())
    s.setRange(0.05, 1e6)  # absurd factors are refused by the limits gate, with the size
    return s


APPLY_OWN = "the model's own stack"


class _Pending(SpatimeINRError):
    """The chosen layer is still being prepared for the model."""


class RenderWidget(QWidget):
    """Render a model lazily at any scale and export it (``napari-spatimeinr.render``)."""

    export_progress = Signal(int, int)  #: (done, total) from the export worker
    export_done = Signal(str)  #: the path written ("" when cancelled or failed)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.export_worker: Any = None
        self._cancel = False
        self.added_layers: list[Any] = []
        self.uncertainty_layers: list[Any] = []
        self._last_browse: tuple[Any, Any] | None = None  # (plan, model) of the last layer
        #: the Vectors layer of "Show motion" (a :class:`.motion_layer.MotionVectors`) or None
        self.motion: Any = None
        self.last_export: Path | None = None
        #: the uncertainty map written by the last export "with uncertainty", or None
        self.last_uncertainty_export: Path | None = None
        #: the files of the export under way, and those of them already complete
        self._export_targets: list[Path] = []
        self._export_written: list[Path] = []
        #: per model folder: (seconds, voxels) of finished exports, for time estimates
        self._export_speed: dict[str, tuple[float, int]] = {}
        self._export_t0 = 0.0
        self._export_plan: Any = None
        #: asked before overwriting (replaced in tests); returns True to overwrite
        self.confirm_overwrite = self._ask_overwrite

        # -- model ------------------------------------------------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.setToolTip(
            "A trained model: from the Train widget of this session, opened with File → Open, or "
            "a model folder chosen with 'Open…'."
        )
        self.open_btn = QPushButton("Open…")
        self.open_btn.setToolTip("Choose a model folder (it holds meta.json and config.yaml).")
        self.apply_combo = QComboBox()
        self.apply_combo.setToolTip(
            "What to render: the stack the model was trained on, or any image layer of the same "
            "kind (2D+t or 3D+t). The model's learned parts run on the layer; its normalization and "
            "motion are computed once in the background and cached (never in the model folder)."
        )
        #: (model folder, layer name) -> applied model folder (see napari_spatimeinr.render.apply)
        self._applied: dict[tuple[str, str], str] = {}
        #: (model folder, layer name) -> why the model cannot run on that layer
        self._apply_errors: dict[tuple[str, str], str] = {}
        self.apply_worker: Any = None
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)

        # -- factors ----------------------------------------------------------------------------
        self.scale_t = _factor_spin(
            "Temporal factor k: k times more frames ((T-1)·k+1 in all). 2 = one new frame between "
            "each pair of measured frames."
        )
        self.scale_z = _factor_spin(
            "Spatial factor along z (depth): output voxels per input voxel."
        )
        self.scale_y = _factor_spin("Spatial factor along y: output voxels per input voxel.")
        self.scale_x = _factor_spin("Spatial factor along x: output voxels per input voxel.")
        self.scale_t.setValue(2.0)
        self.iso_btn = QPushButton("Isotropic")
        self.iso_btn.setToolTip(
            "Set the z factor to the voxel's z/x ratio (dz/dx) and y, x to 1: cubic output voxels."
        )
        self.iso_label = QLabel("")

        # -- part -------------------------------------------------------------------------------
        self.t_check = QCheckBox("Only frames")
        self.t_check.setToolTip("Render only the frames between these input frame numbers.")
        self.t_from = QDoubleSpinBox()
        self.t_to = QDoubleSpinBox()
        for s, what in ((self.t_from, "First"), (self.t_to, "Last")):
            s.setDecimals(1)
            s.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
            s.setRange(0, 0)
            s.setEnabled(False)
            s.setToolTip(f"{what} input frame (0 = the first frame of the input) to render.")
        self.keep_measured = QCheckBox("as acquired (raw values)")
        self.keep_measured.setToolTip(
            "Off (default): every frame comes from the model at one noise level, measured ones "
            "included, so the movie does not pulse every k-th frame. On: the measured frames are "
            "the acquired data (for analyses that need the raw values)."
        )
        self.uncertainty_check = QCheckBox("Show uncertainty")
        self.uncertainty_check.setToolTip(SHOW_UNCERTAINTY_TIP)
        self.roi_combo = QComboBox()
        self.roi_combo.setToolTip(
            "Region to render: the whole volume, the part of the image now in view (y, x), or the "
            "bounding box of the shapes drawn in a shapes layer."
        )

        # -- add layer --------------------------------------------------------------------------
        self.add_btn = QPushButton("Add layer")
        self.add_btn.setToolTip(
            "Add the render as a layer (computed slice by slice as you browse; it overlays the input)."
        )
        self.grid_btn = QPushButton("Side by side")
        self.grid_btn.setCheckable(True)
        self.grid_btn.setToolTip("Show the layers next to each other (napari grid view).")
        self.motion_check = QCheckBox("Show motion")
        self.motion_check.setToolTip(MOTION_TIP)
        self.output_info = QLabel("")
        self.output_info.setWordWrap(True)  # a refusal by the limits gate is one long line
        self.output_info.setToolTip(
            "Shape (frames × z × y × x voxels), size and physical sampling of the output. The "
            "export time comes from the speed measured while slices of this model were shown, "
            "or from an earlier export of it."
        )

        # -- export -----------------------------------------------------------------------------
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("output.tif")
        self.path_edit.setToolTip(
            "File to write. Its ending picks the format: .tif (ImageJ TIFF, opens in Fiji), "
            ".ome.tif (OME-TIFF, large files), .nii.gz (NIfTI), .zarr (OME-Zarr, chunked)."
        )
        self.browse_btn = QPushButton("…")
        self.browse_btn.setMaximumWidth(32)
        self.browse_btn.setToolTip("Choose the output file.")
        self.dtype_combo = QComboBox()
        # as wide as its entries: the "with uncertainty" box fits on the same row
        self.dtype_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.dtype_combo.addItems(["float32", "uint16"])
        self.dtype_combo.setToolTip(
            "float32: exact values (larger files). uint16: 16-bit integers like most microscope "
            "files (the input's intensity units when it was integer, else its range mapped to "
            "0–65535)."
        )
        self.export_unc_check = QCheckBox("with uncertainty")
        self.export_unc_check.setToolTip(UNCERTAINTY_EXPORT_TIP)
        self.export_btn = QPushButton("Export")
        self.export_btn.setToolTip(
            "Render with these settings and write the file (in the background)."
        )
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the export; no partial file is left.")
        self.cancel_btn.setEnabled(False)
        self.copy_btn = QPushButton("Copy command")
        self.copy_btn.setToolTip(
            "Copy the 'spatimeinr render' command line of this export (paths quoted) to the "
            "clipboard: paste it into a terminal, e.g. on a cluster (docs/cluster.md)."
        )
        self.job_btn = QPushButton("Save job script…")
        self.job_btn.setToolTip(
            "Save a SLURM batch script that runs this export, with time, memory and GPU "
            "estimated for it (a large render runs on a dask cluster of several nodes); submit "
            "it with 'sbatch FILE' (docs/cluster.md)."
        )
        self.export_bar = QProgressBar()
        self.export_bar.setToolTip("Export progress (chunks written).")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e06c6c;")

        # -- layout -----------------------------------------------------------------------------
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.open_btn)
        form = form_layout()
        form.addRow(self._label("Model", self.model_combo.toolTip()), model_row)
        form.addRow(self._label("Apply to", self.apply_combo.toolTip()), self.apply_combo)
        form3 = form_layout()
        form3.addRow(self._label("Time factor", self.scale_t.toolTip()), self.scale_t)
        space_row = QHBoxLayout()
        for s in (self.scale_z, self.scale_y, self.scale_x):
            space_row.addWidget(s)
        space_row.addWidget(self.iso_btn)
        form3.addRow(
            self._label("Space factors z, y, x", "Spatial factors along z, y and x."), space_row
        )
        form3.addRow("", self.iso_label)
        t_row = QHBoxLayout()
        t_row.addWidget(self.t_check)
        t_row.addWidget(self.t_from)
        t_row.addWidget(QLabel("to"))
        t_row.addWidget(self.t_to)
        form3.addRow(self._label("Time range", self.t_check.toolTip()), t_row)
        form3.addRow(self._label("Region", self.roi_combo.toolTip()), self.roi_combo)
        form3.addRow(
            self._label("Measured frames", self.keep_measured.toolTip()), self.keep_measured
        )
        view_row = QHBoxLayout()
        view_row.addWidget(self.add_btn)
        view_row.addWidget(self.grid_btn)
        show_row = QHBoxLayout()  # what comes with the render layer
        show_row.addWidget(self.uncertainty_check)
        show_row.addWidget(self.motion_check)
        ef = form_layout()
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_btn)
        ef.addRow(self._label("Export to file", self.path_edit.toolTip()), path_row)
        type_row = QHBoxLayout()  # one row: the panel fits 800-pixel screens with its status
        type_row.addWidget(self.dtype_combo)
        type_row.addWidget(self.export_unc_check)
        type_row.addStretch(1)
        ef.addRow(self._label("Pixel type", self.dtype_combo.toolTip()), type_row)
        ex_row = QHBoxLayout()
        ex_row.addWidget(self.export_btn)
        ex_row.addWidget(self.cancel_btn)
        job_row = QHBoxLayout()
        job_row.addWidget(self.copy_btn)
        job_row.addWidget(self.job_btn)
        lay = scroll_layout(self)
        lay.addLayout(form)
        lay.addWidget(self.model_info)
        lay.addLayout(form3)
        lay.addWidget(self.output_info)
        lay.addLayout(view_row)
        lay.addLayout(show_row)
        lay.addSpacing(8)
        lay.addLayout(ef)
        lay.addLayout(ex_row)
        lay.addLayout(job_row)
        lay.addWidget(self.export_bar)
        lay.addWidget(self.status)
        lay.addWidget(self.error_label)
        lay.addStretch(1)
        relax_widths(self)
        fit_width(self)

        # -- wiring -----------------------------------------------------------------------------
        reg = registry()
        reg.added.connect(self._model_added)
        self.open_btn.clicked.connect(self._browse_model)
        self.iso_btn.clicked.connect(self.make_isotropic)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.apply_combo.currentIndexChanged.connect(self._apply_changed)
        for s in (self.scale_t, self.scale_z, self.scale_y, self.scale_x, self.t_from, self.t_to):
            s.valueChanged.connect(self.update_info)
        self.t_check.toggled.connect(self._t_toggled)
        self.roi_combo.currentIndexChanged.connect(self.update_info)
        self.keep_measured.toggled.connect(self.update_info)
        self.dtype_combo.currentIndexChanged.connect(self.update_info)
        self.path_edit.textChanged.connect(self.update_info)
        self.export_unc_check.toggled.connect(self.update_info)
        self.add_btn.clicked.connect(self.add_layer)
        self.uncertainty_check.toggled.connect(self._uncertainty_toggled)
        self.grid_btn.toggled.connect(self.set_grid)
        self.motion_check.toggled.connect(self.show_motion)
        self.browse_btn.clicked.connect(self._browse_path)
        self.export_btn.clicked.connect(self.export)
        self.cancel_btn.clicked.connect(self.cancel)
        self.copy_btn.clicked.connect(self.copy_command)
        self.job_btn.clicked.connect(lambda: self.save_job_script())
        self.export_progress.connect(self._on_export_progress)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        for p in reg.paths():
            self._model_added(p)
        self._layers_changed()
        self._model_changed()

    @staticmethod
    def _label(text: str, tip: str) -> QLabel:
        label = QLabel(text)
        label.setToolTip(tip)
        return label

    # -- models ---------------------------------------------------------------------------------
    def _model_added(self, path: str) -> None:
        if self.model_combo.findData(path) < 0:
            self.model_combo.addItem(Path(path).name, path)
            self.model_combo.setItemData(self.model_combo.count() - 1, path, 3)  # tooltip role
        self.model_combo.setCurrentIndex(self.model_combo.findData(path))

    def add_model(self, path: str | Path) -> None:
        """Make a model directory available (and selected); refuses folders that are not models."""
        api.open_model(path)
        registry().add(path)
        self._model_added(str(Path(path).resolve()))

    def _browse_model(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if d:
            try:
                self.add_model(d)
            except SpatimeINRError as err:
                self._fail(str(err))

    def model(self) -> Any | None:
        path = self.model_combo.currentData()
        if not path:
            return None
        try:
            return api.open_model(path)
        except SpatimeINRError as err:
            self._fail(str(err))
            return None

    def _model_changed(self, *_: Any) -> None:
        md = self.model()
        if md is None:
            self.model_info.setText("No model yet: train one, or open a model folder.")
        else:
            t, z, y, x = md.shape
            vz, vy, vx = md.voxel_size
            self.model_info.setText(
                f"{METHOD_LABELS.get(md.method, md.method)} model of {md.name!r}\n{t} frames × {z} × {y} × {x} voxels\n"
                f"{vz:g} × {vy:g} × {vx:g} µm, {md.frame_interval:g} s per frame"
                + (
                    f"\n{spatial_summary(md.meta.get('spatial'), short=True)}"
                    if md.shape[1] > 1 and md.method == "spatimeinr"
                    else ""
                )
            )
            self._sync_t_range(t)
            if not self.path_edit.text():
                self.path_edit.setText(
                    str(Path(md.path).with_name(f"{file_stem(md.name)}_render.tif"))
                )
        self._motion_model_changed(md)
        self._apply_changed()

    def _sync_t_range(self, n_frames: int) -> None:
        """The time range spans the frames of the stack rendered (the model's or a layer's)."""
        for s in (self.t_from, self.t_to):
            s.blockSignals(True)
            s.setRange(0, n_frames - 1)
            s.blockSignals(False)
        self.t_to.setValue(n_frames - 1)

    def make_isotropic(self) -> None:
        """z factor = dz/dx, y and x factors = 1; the label says the resulting voxel size."""
        md = self.model()
        if md is None:
            return
        vz, vy, vx = md.voxel_size
        self.scale_y.setValue(1.0)
        self.scale_x.setValue(1.0)
        self.scale_z.setValue(vz / vx)
        z = md.shape[1]
        out_z = spatial_size(z, self.scale_z.value())
        self.iso_label.setText(
            f"Isotropic: z × {self.scale_z.value():g} → voxels of "
            f"{vz * z / out_z:.3g} × {vy:.3g} × {vx:.3g} µm"
        )

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
        self.motion = MotionVectors(self.viewer, md, parent=self)
        self.motion.failed.connect(self._fail)
        if not self.motion_check.isChecked():
            self.motion_check.setChecked(True)
        self.status.setText(
            f"Motion of {md.name!r}: arrows every {self.motion.step} voxels, following the time "
            "slider (velocity from the frame in view to the next)."
        )
        return self.motion

    def _layers_changed(self, *_: Any) -> None:
        if self.motion is not None and self.motion.layer not in self.viewer.layers:
            self.show_motion(False)  # the user deleted the layer: the box follows
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
        return layer_to_stack(layer, axes, vs, fi)

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
            raise _Pending(
                f"Preparing {layer.name!r} for this model (its normalization and motion); Add "
                "layer and Export are available when it is ready."
            )
        return api.open_model(path)

    def _t_toggled(self, on: bool) -> None:
        self.t_from.setEnabled(on)
        self.t_to.setEnabled(on)
        self.update_info()

    # -- the render -------------------------------------------------------------------------------
    def roi(self, md: Any) -> tuple[int, int, int, int, int, int] | None:
        """The region (input voxels Z0:Z1, Y0:Y1, X0:X1) chosen, or ``None`` for the whole volume."""
        choice = self.roi_combo.currentText()
        if choice == ROI_WHOLE or not choice:
            return None
        _, nz, ny, nx = md.shape
        vz, vy, vx = md.voxel_size
        o = [float(v) for v in md.meta.get("origin", (0.0, 0.0, 0.0, 0.0))]
        if choice == ROI_VIEW:
            lo, hi = self._view_box_world()
        else:
            name = choice.split(": ", 1)[1]
            layer = self.viewer.layers[name]
            if len(layer.data) == 0:
                raise SpatimeINRError(
                    f"The shapes layer {name!r} is empty: draw a rectangle in it."
                )
            pts = np.concatenate([np.asarray(d)[:, -2:] for d in layer.data])
            world = pts * np.asarray(layer.scale[-2:]) + np.asarray(layer.translate[-2:])
            lo, hi = world.min(0), world.max(0)
        y0 = int(np.floor((lo[0] - o[2]) / vy + 0.5))
        y1 = int(np.ceil((hi[0] - o[2]) / vy + 0.5))
        x0 = int(np.floor((lo[1] - o[3]) / vx + 0.5))
        x1 = int(np.ceil((hi[1] - o[3]) / vx + 0.5))
        y0, y1 = max(0, y0), min(ny, y1)
        x0, x1 = max(0, x0), min(nx, x1)
        if y1 <= y0 or x1 <= x0:
            raise SpatimeINRError(
                "The region is outside the model's image: pan/zoom onto the image or draw the "
                "rectangle over it."
            )
        return (0, nz, y0, y1, x0, x1)

    def _view_box_world(self) -> tuple[np.ndarray, np.ndarray]:
        """World (y, x) corners of the canvas area in view."""
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9
        cam = scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9; older: _canvas_size
        if canvas is not None and hasattr(canvas, "viewbox_size"):
            size = np.asarray(canvas.viewbox_size(self.viewer.layers), float)
        else:
            size = np.asarray(getattr(self.viewer, "_canvas_size", (512, 512)), float)
        half = size / (2 * cam.zoom)
        centre = np.asarray(cam.center[-2:], float)
        return centre - half, centre + half

    def _model_or_fail(self) -> Any:
        """The model directory that renders the current choice (:meth:`target`), or an error."""
        md = self.target()
        if md is None:
            raise SpatimeINRError("No model: train one in the Train widget or open a model folder.")
        return md

    def render_settings(self, md: Any) -> RenderConfig:
        """The render settings of the widget for model ``md`` (what Export and the command use)."""
        t_range = (self.t_from.value(), self.t_to.value()) if self.t_check.isChecked() else None
        if t_range is not None and t_range[1] < t_range[0]:
            raise SpatimeINRError("Time range: the last frame must not come before the first.")
        return build(
            RenderConfig,
            {
                "scale_t": self.scale_t.value(),
                "scale_z": self.scale_z.value(),
                "scale_y": self.scale_y.value(),
                "scale_x": self.scale_x.value(),
                "t_range": t_range,
                "roi": self.roi(md),
                "dtype": self.dtype_combo.currentText(),
                "keep_measured": self.keep_measured.isChecked(),
            },
            "render settings",
        )

    def plan(self) -> Any:
        """The render plan of the current settings (raises SpatimeINRError when invalid)."""
        md = self._model_or_fail()
        s = self.render_settings(md)
        return api.plan_render(
            md,
            scale_t=s.scale_t,
            scale_zyx=s.scale_zyx,
            t_range=s.t_range,
            roi=s.roi,
            keep_measured=s.keep_measured,
        )

    def refusals(self, plan: Any, probe: bool = False) -> tuple[str, str]:
        """Why the limits gate refuses (Add layer, Export) of ``plan``: '' when it allows it.

        ``probe`` also checks that the export folder takes a new file (done on Export only).
        """
        from .._layers import browse_cost
        from ..limits import check_render_export, check_view
        from ..store.model_dir import ModelDir

        try:
            check_view(browse_cost(plan))
            view = ""
        except SpatimeINRError as err:
            view = str(err)
        text = self.path_edit.text().strip()
        if not text or suffix_of(text) not in SUPPORTED_WRITE_SUFFIXES:
            return view, ""
        out = Path(text).expanduser()
        targets = [out, uncertainty_path(out)] if self.exports_uncertainty() else [out]
        try:  # the CLI's gate, on the plan's own model directory (the applied one for a layer)
            s = self.render_settings(ModelDir(plan.model_dir))
            check_render_export(
                plan._input_shape,
                plan.model_dir,
                targets,
                s.dtype,
                scale_t=s.scale_t,
                scale_zyx=s.scale_zyx,
                t_range=s.t_range,
                roi=s.roi,
                check_target=probe,
            )
            return view, ""
        except SpatimeINRError as err:
            return view, str(err)

    # -- the uncertainty beside the export --------------------------------------------------------
    def _sync_uncertainty_export(self) -> None:
        """Offer "with uncertainty" (export) only when the model (or the model applied to the chosen
        layer) can make a map; otherwise grey it out, say why in its tooltip, and clear it (kept
        while a layer is being prepared for the model)."""
        from ..render.lazy import check_uncertainty

        why, pending = "", False
        try:
            md = self.target()
            if md is None:
                why = "no model yet."
            else:
                check_uncertainty(md)
        except _Pending:
            why, pending = "the chosen layer is still being prepared for the model.", True
        except SpatimeINRError as err:
            why = str(err)
        box = self.export_unc_check
        box.setEnabled(not why)
        box.setToolTip(UNCERTAINTY_EXPORT_TIP + (f"\nNot available: {why}" if why else ""))
        if why and not pending and box.isChecked():
            box.setChecked(False)
        # "Show uncertainty" likewise (left enabled while checked: unchecking removes its layers)
        show = self.uncertainty_check
        show.setEnabled(not why or show.isChecked())
        show.setToolTip(SHOW_UNCERTAINTY_TIP + (f"\nNot available: {why}" if why else ""))

    def exports_uncertainty(self) -> bool:
        """Whether Export (and the command) also writes the uncertainty map."""
        return self.export_unc_check.isEnabled() and self.export_unc_check.isChecked()

    def uncertainty_export_path(self) -> Path | None:
        """The file the uncertainty map goes to (beside :meth:`export_path`), or None when it is
        not exported."""
        return uncertainty_path(self.export_path()) if self.exports_uncertainty() else None

    def update_info(self, *_: Any) -> None:
        self._sync_uncertainty_export()
        try:
            plan = self.plan()
        except _Pending as err:  # not an error: the chosen layer is being prepared
            self.output_info.setText(str(err))
            self.error_label.setText("")
            self.add_btn.setEnabled(False)
            self.export_btn.setEnabled(False)
            return
        except LimitError as err:  # the plan alone is absurd: say so in the info line
            self.output_info.setText(str(err))
            self.error_label.setText("")
            self.add_btn.setEnabled(False)
            self.export_btn.setEnabled(False)
            return
        except SpatimeINRError as err:
            self.output_info.setText("")
            self.error_label.setText(str(err))
            self.add_btn.setEnabled(False)
            self.export_btn.setEnabled(False)
            return
        view, export = self.refusals(plan)
        info = self.plan_text(plan)
        for refusal in dict.fromkeys(r for r in (view, export) if r):
            info += "\n" + refusal
        self.output_info.setText(info)
        self.error_label.setText("")
        self.add_btn.setEnabled(not view)
        self.export_btn.setEnabled(self.export_worker is None and not export)

    def plan_text(self, plan: Any) -> str:
        """Shape, physical sampling, size on disk and estimated export time of a render."""
        from ..io.write import estimate_output_bytes

        m = plan.meta
        t, z, y, x = plan.shape
        dtype = self.dtype_combo.currentText()
        suffix = suffix_of(self.path_edit.text().strip() or "out.tif") or ".tif"
        if suffix not in SUPPORTED_WRITE_SUFFIXES:
            suffix = ".tif"
        disk = estimate_output_bytes(plan.shape, dtype, suffix)
        files = 2 if self.exports_uncertainty() else 1  # the map: same grid, same size
        speed, exact = self.measured_speed(plan.model_dir)
        if speed is None:
            when = "export time: browse a few slices to estimate it"
        else:
            secs = fmt_duration(files * math.prod(plan.shape) / speed)
            when = f"export ≈ {secs}" + ("" if exact else " (from the slices shown)")
        size = f"≈ {_fmt_bytes(disk)}" + (
            f" + {_fmt_bytes(disk)} (uncertainty)" if files > 1 else ""
        )
        return (
            f"Output: {t} frames × {z} × {y} × {x} voxels\n"
            f"{m.voxel_size[0]:.3g} × {m.voxel_size[1]:.3g} × {m.voxel_size[2]:.3g} µm, "
            f"{m.frame_interval:.3g} s per frame\n"
            f"{size} on disk ({dtype}); {when}"
        )

    def measured_speed(self, model_dir: str | Path) -> tuple[float | None, bool]:
        """(voxels per second, whether measured by an export) for a model, or (None, False).

        A finished export gives the export's own speed; else the slices computed for the layers
        of this model give an estimate.
        """
        path = str(Path(model_dir).resolve())
        seconds, voxels = self._export_speed.get(path, (0.0, 0))
        if seconds > 0 and voxels > 0:
            return voxels / seconds, True
        speeds = [
            ly.data.speed
            for ly in self.viewer.layers
            if isinstance(ly.data, AsyncArray) and layer_meta(ly).get("model_dir") == path
        ]
        speeds = [s for s in speeds if s]
        return (max(speeds) if speeds else None), False

    def add_layer(self) -> Any | None:
        """Add the render as a lazy layer computed off the GUI thread; returns the layer."""
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
        md = api.open_model(plan.model_dir)
        self._ensure_input_layer(md)
        kw = render_layer_kwargs(plan, md)
        plan = browsed
        layer = add_async_layer(
            self.viewer,
            api.render_plan(plan),
            on_error=self._fail,
            processes=True,  # slices computed in the render process: napari never waits
            **kw,
        )
        layer.data.ready.connect(self.update_info)  # the measured speed improves the estimate
        self.added_layers.append(layer)
        self._last_browse = (browsed, md)
        self.status.setText(
            f"Added {kw['name']!r}: each slice is computed when you first show it, then kept."
        )
        if self.uncertainty_check.isChecked():
            self.add_uncertainty_layer()
        return layer

    def add_uncertainty_layer(self) -> Any | None:
        """Add the uncertainty map of the last render layer as a lazy layer (computed off the GUI
        thread like the render); returns it, or None (with the reason shown) when it cannot."""
        from .._layers import uncertainty_layer_kwargs
        from ..render.lazy import check_uncertainty

        if self._last_browse is None:
            self.status.setText("Add a render layer first: its uncertainty is shown with it.")
            return None
        plan, md = self._last_browse
        try:
            check_uncertainty(md)
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

    def _ensure_input_layer(self, md: Any) -> None:
        path = str(Path(md.path).resolve())
        for ly in self.viewer.layers:
            if layer_meta(ly).get("model_dir") == path or ly.name == md.name:
                return
        self.viewer.add_image(md.stack().data, **model_input_kwargs(md))

    def grid(self) -> Any:
        """napari's grid settings (``viewer.canvas.grid`` since 0.9, ``viewer.grid`` before)."""
        canvas = getattr(self.viewer, "canvas", None)
        return canvas.grid if canvas is not None and hasattr(canvas, "grid") else self.viewer.grid

    def set_grid(self, on: bool) -> None:
        """Side-by-side view of the layers (one column per layer), or back to overlay."""
        grid = self.grid()
        if on:  # a training preview is transient: it never takes a panel of the grid
            remove_layers(
                self.viewer, [ly for ly in self.viewer.layers if "preview" in ly.metadata]
            )
        grid.enabled = bool(on)
        if on:
            grid.shape = (1, max(1, len(self.viewer.layers)))
        if self.grid_btn.isChecked() != bool(on):
            self.grid_btn.setChecked(bool(on))

    # -- the same export elsewhere: a command line, a batch job -----------------------------------------
    def export_path(self) -> Path:
        """The file Export writes (``.tif`` added when the name has no ending)."""
        text = self.path_edit.text().strip()
        if not text:
            raise SpatimeINRError("Choose a file to export to (e.g. result.tif).")
        path = Path(text).expanduser()
        if not path.suffix:
            path = path.with_name(path.name + ".tif")
        if suffix_of(path) not in SUPPORTED_WRITE_SUFFIXES:
            raise SpatimeINRError(
                f"{path.name}: unknown file type. End the name with .tif, .ome.tif, .nii.gz or .zarr."
            )
        return path

    def command_argv(self) -> list[str]:
        """The ``spatimeinr render`` argv of the current export settings."""
        from ..workflows.jobs import render_argv

        md = self._model_or_fail()
        self.plan()  # refuses what Export would refuse before the render starts
        layer = self.apply_layer()
        unc = self.uncertainty_export_path()
        if layer is None:
            return render_argv(
                md.path, self.export_path(), self.render_settings(md), uncertainty=unc
            )
        source = layer_source(layer)  # the model applied to a layer: render MODEL --input FILE
        if not source:
            raise SpatimeINRError(
                f"The layer {layer.name!r} has no file: save it (File → Save Selected Layers) and "
                "open it again to put it in a command."
            )
        argv = render_argv(
            self.model().path, self.export_path(), self.render_settings(md), uncertainty=unc
        )
        return [*argv, "--input", str(Path(source).resolve())]

    def copy_command(self) -> str:
        """Copy the command line of the current export to the clipboard; returns it ("" when the
        settings cannot be written as a command: the reason is shown)."""
        from ..workflows.jobs import command_line

        try:
            line = command_line(self.command_argv())
        except SpatimeINRError as err:
            self._fail(str(err))
            return ""
        QApplication.clipboard().setText(line)
        self.error_label.setText("")
        self.status.setText(f"Copied to the clipboard: {line}")
        return line

    def job_script(self) -> str:
        """The SLURM batch script of the current export (see :func:`..jobs.slurm_script`)."""
        from ..workflows.jobs import render_resources, slurm_script

        md = self._model_or_fail()
        argv = self.command_argv()
        resources = render_resources(
            md.shape,
            self.render_settings(md),
            model_bytes=(md.path / "input.npy").stat().st_size,
            voxels_per_second=self.measured_speed(md.path)[0],
            train_device=md.config.device,
            output=self.export_path(),
            uncertainty=self.exports_uncertainty(),
        )
        return slurm_script(argv, resources, job_name=f"spatimeinr-render-{md.name}")

    def save_job_script(self, path: str | Path | None = None) -> Path | None:
        """Write :meth:`job_script` to ``path`` (asked with a file dialog when None, which
        confirms a replacement; a given path that exists is refused). Returns the file written."""
        try:
            text = self.job_script()
            suggested = self.export_path().with_name(
                f"{self.export_path().name.split('.')[0]}.render.sbatch"
            )
            written = save_job_script_file(self, text, suggested, path)
        except SpatimeINRError as err:
            self._fail(str(err))
            return None
        if written is None:
            return None
        self.error_label.setText("")
        self.status.setText(job_saved_message(written))
        return written

    # -- export -----------------------------------------------------------------------------------
    def _browse_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export render", self.path_edit.text(), EXPORT_FILTER
        )
        if path:
            self.path_edit.setText(path)

    def _ask_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "Overwrite?",
            f"{path} exists. Replace it (once the new file is complete)?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def export(self) -> bool:
        """Start exporting the render to the chosen file; returns False if it did not start."""
        if self.export_worker is not None:
            return False
        text = self.path_edit.text().strip()
        if not text:
            self._fail("Choose a file to export to (e.g. result.tif).")
            return False
        path = Path(text).expanduser()
        if not path.suffix:  # ImageJ TIFF by default
            path = path.with_name(path.name + ".tif")
            self.path_edit.setText(str(path))
        if suffix_of(path) not in SUPPORTED_WRITE_SUFFIXES:
            self._fail(
                f"{path.name}: unknown file type. End the name with .tif, .ome.tif, .nii.gz or .zarr."
            )
            return False
        try:
            plan = self.plan()
        except SpatimeINRError as err:
            self._fail(str(err))
            return False
        refused = self.refusals(plan, probe=True)[1]
        if refused:
            self._fail(refused)
            return False
        # the files the CLI's "render -o PATH [--uncertainty FILE]" writes, from the same code
        outputs = api.render_outputs(
            plan, path, uncertainty_path(path) if self.exports_uncertainty() else None
        )
        overwrite = []
        for out in outputs:  # every existing file is asked about before any work
            if out.path.exists() and not self.confirm_overwrite(out.path):
                self.status.setText(f"Export not started: {out.path.name} exists.")
                return False
            overwrite.append(out.path.exists())
        dtype = self.dtype_combo.currentText()
        self._cancel = False
        self.error_label.setText("")
        self.export_bar.setRange(0, 0)  # busy until the first chunk
        self._export_targets = [out.path for out in outputs]
        self._export_written = []
        written = self._export_written
        n = len(outputs)

        def run() -> Path:
            # in a child process: rendering holds the GIL for long stretches (napari would stall)
            for kind, i, *rest in iterate_in_process(
                export_outputs_steps,
                outputs,
                overwrite,
                dtype=dtype,
                stop=lambda: self._cancel,
            ):
                if kind == "progress":  # one bar for all files (they have the same chunks)
                    done, total = rest
                    self.export_progress.emit(i * total + done, n * total)
                else:
                    written.append(Path(rest[0]))
            if len(written) < n:
                raise SpatimeINRError("The export ended without writing the file.")
            return written[0]

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        self._export_t0 = time.perf_counter()
        self._export_plan = plan
        worker.returned.connect(self._on_exported)
        worker.errored.connect(self._on_export_error)
        worker.finished.connect(self._on_export_finished)
        self.export_worker = worker
        self.export_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(f"Exporting to {' and '.join(out.path.name for out in outputs)}…")
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop the export after the current chunk; the partial output is removed."""
        self._cancel = True
        self.cancel_btn.setEnabled(False)
        self.status.setText("Cancelling…")

    def _on_export_progress(self, done: int, total: int) -> None:
        self.export_bar.setRange(0, max(1, total))
        self.export_bar.setValue(done)
        if 0 < done < total and not self._cancel:
            elapsed = time.perf_counter() - self._export_t0
            left = elapsed / done * (total - done)
            self.status.setText(
                f"Exporting: part {done} of {total} written, {fmt_seconds(elapsed)} elapsed, "
                f"about {fmt_seconds(left)} left."
            )

    def _on_exported(self, path: Path) -> None:
        written = list(self._export_written) or [Path(path)]
        self.last_export = Path(path)
        self.last_uncertainty_export = written[1] if len(written) > 1 else None
        plan = self._export_plan
        if plan is not None:
            key = str(Path(plan.model_dir).resolve())
            s, n = self._export_speed.get(key, (0.0, 0))
            elapsed = time.perf_counter() - self._export_t0
            voxels = len(written) * math.prod(plan.shape)
            self._export_speed[key] = (s + elapsed, n + voxels)
            self.update_info()  # the next estimate uses this export's speed
        self.status.setText(
            "Exported " + " and ".join(f"{p.name} ({_fmt_bytes(_size(p))})" for p in written) + "."
        )
        self.export_bar.setRange(0, 1)
        self.export_bar.setValue(1)
        self.export_done.emit(str(path))

    def _on_export_error(self, err: BaseException) -> None:
        self.export_bar.setRange(0, 1)
        self.export_bar.setValue(0)
        kept = [p.name for p in self._export_written]  # complete files stay (the render)
        left = [p.name for p in self._export_targets if p.name not in kept]
        if isinstance(err, StopRequested):
            if kept:
                self.status.setText(
                    f"Export cancelled: {' and '.join(left)} was not written "
                    f"({' and '.join(kept)} was)."
                )
            else:
                self.status.setText("Export cancelled: no file was written.")
        else:
            text = str(err) if isinstance(err, SpatimeINRError) else f"{type(err).__name__}: {err}"
            done = f" ({' and '.join(kept)} was written)" if kept else ""
            self._fail(f"Export failed: {text}{done}")
        self.export_done.emit("")

    def _on_export_finished(self) -> None:
        self.export_worker = None
        self.cancel_btn.setEnabled(False)
        self.update_info()

    def _fail(self, text: str) -> None:
        self.error_label.setText(text)
        try:
            from napari.utils.notifications import show_error

            show_error(text)
        except Exception:  # pragma: no cover - notifications are best effort
            pass
