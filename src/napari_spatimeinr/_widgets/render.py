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
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
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
from .actions import CommandActions
from .async_layer import AsyncArray, add_async_layer
from .forms import (
    file_stem,
    fit_width,
    fmt_duration,
    fmt_seconds,
    form_layout,
    layer_axes,
    layer_meta,
    layer_physical,
    layer_source,
    layer_to_stack,
    relax_widths,
    remove_layers,
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


def _identity(layer: Any) -> int:
    """The identity of a layer, also through napari's proxy (a plugin's viewer hands out proxies
    of its layers: two proxies of one layer are different objects)."""
    return id(getattr(layer, "__wrapped__", layer))


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
#: metadata key of the hidden layers that pad the side-by-side panels (see RenderWidget.set_grid)
GRID_SPACER = "spatimeinr_grid_spacer"


class _Pending(SpatimeINRError):
    """The chosen layer is still being prepared for the model."""


class RenderWidget(CommandActions, QWidget):
    """Render a model lazily at any scale and export it (``napari-spatimeinr.render``)."""

    export_progress = Signal(int, int)  #: (done, total) from the export worker
    export_done = Signal(str)  #: the path written ("" when cancelled or failed)
    #: the export time of the current plan was measured (the output info line now shows it)
    estimate_ready = Signal()

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
        #: layers hidden while side by side (shown again when switching back)
        self._hidden_for_grid: list[Any] = []
        self._arranging = False
        self._order_before: list[Any] = []
        self._gc_held = False
        self.last_export: Path | None = None
        #: the uncertainty map written by the last export "with uncertainty", or None
        self.last_uncertainty_export: Path | None = None
        #: the files of the export under way, and those of them already complete
        self._export_targets: list[Path] = []
        self._export_written: list[Path] = []
        #: seconds the last export took, from the click to its files complete
        self.last_export_seconds: float | None = None
        self._export_t0 = 0.0
        self._export_plan: Any = None
        #: export speed measured per plan (voxels per second of a warm chunk), see _start_probe
        self._probes: dict[str, float] = {}
        #: per model folder: the extra seconds of its first chunk in a new process (model loading)
        self._cold: dict[str, float] = {}
        self._probe_wanted: tuple[str, Any] | None = None
        self._probe_errors: set[str] = set()  # plans whose chunks could not be timed
        #: the lazy layers' dask arrays of the latest plan, built by the probe's worker
        self._prebuilt: dict[str, dict[str, Any]] = {}
        self._unc_prebuilt: Any = None
        self._probe_worker: Any = None
        self._probe_timer = QTimer(self)
        self._probe_timer.setSingleShot(True)
        self._probe_timer.setInterval(400)  # once the factors stop changing
        self._probe_timer.timeout.connect(self._start_probe)
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
        self.flip_btn = QPushButton("Input ⇄ render")
        self.flip_btn.setToolTip(
            "Blink between the measured input and the render in the same place (a blink "
            "comparator): each click hides or shows the render layers over the input. Where the "
            "two differ at a measured frame, the model changed what was measured."
        )
        self.motion_check = QCheckBox("Show motion")
        self.motion_check.setToolTip(MOTION_TIP)
        self.output_info = QLabel("")
        self.output_info.setWordWrap(True)  # a refusal by the limits gate is one long line
        self.output_info.setToolTip(
            "Shape (frames × z × y × x voxels), size and physical sampling of the output. The "
            "export time is measured on this machine: two chunks of this render are timed in the "
            "background when the settings change (one with the model loaded afresh, as an "
            "export's own process loads it), plus the start-up of a process."
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
        view_row.addWidget(self.flip_btn)
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
        self.grid_btn.toggled.connect(self._grid_toggled)
        self.flip_btn.clicked.connect(self.flip)
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
        info = self.plan_text(plan, measure=not (view or export))
        for refusal in dict.fromkeys(r for r in (view, export) if r):
            info += "\n" + refusal
        self.output_info.setText(info)
        self.error_label.setText("")
        self.add_btn.setEnabled(not view)
        self.export_btn.setEnabled(self.export_worker is None and not export)

    def plan_text(self, plan: Any, measure: bool = True) -> str:
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
        estimate = self.export_estimate(plan, files, measure=measure)
        if estimate is None and not measure:
            when = "export time: not measured (refused)"
        elif estimate is None:
            when = "export time: measuring this model's speed…"
        else:
            when = f"export ≈ {fmt_duration(estimate)}"
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
        """(voxels per second, True) of a warm chunk of the current plan of ``model_dir``, as
        measured by :meth:`_probe`; (None, False) before."""
        path = str(Path(model_dir).resolve())
        rates = [r for key, r in self._probes.items() if key.startswith(repr(path))]
        try:
            key = self._plan_key(self.plan())
        except SpatimeINRError:
            key = ""
        rate = self._probes.get(key) or (max(rates) if rates else None)
        return rate, rate is not None

    # -- the export time, measured ------------------------------------------------------------
    @staticmethod
    def _plan_key(plan: Any) -> str:
        p = plan.meta.provenance
        return repr(
            (
                str(Path(plan.model_dir).resolve()),
                tuple(plan.shape),
                p.get("factors"),
                p.get("t_range"),
                p.get("roi"),
                bool(plan.keep_measured),
            )
        )

    def export_estimate(self, plan: Any, files: int = 1, measure: bool = True) -> float | None:
        """Seconds an export of ``plan`` (``files`` files) takes here, from measurements: the
        start of a child process (:data:`.processes.STARTUP_S`), loading the model in it (the
        first chunk's extra time in a fresh renderer) and the chunks at the speed of a warm chunk
        of this plan timed in the render process (:meth:`_probe`). None until measured (the
        measurement is started, unless ``measure`` is False: a plan the limits refuse)."""
        from . import processes

        key = self._plan_key(plan)
        rate = self._probes.get(key)
        if rate is None:
            if measure and key not in self._probe_errors:
                self._want_probe(key, plan)
            return None
        cold = self._cold.get(str(Path(plan.model_dir).resolve()), 0.0)
        return (processes.STARTUP_S or 0.0) + cold + files * math.prod(plan.shape) / rate

    def _want_probe(self, key: str, plan: Any) -> None:
        if self._probe_wanted is None or self._probe_wanted[0] != key:
            self._probe_wanted = (key, plan)
            self._probe_timer.start()

    def _start_probe(self) -> None:
        """Time two export chunks of the wanted plan in the render process (off the GUI thread):
        the first in a fresh renderer the first time a model is measured (its load), the second
        warm (the speed)."""
        if self._probe_worker is not None or self._probe_wanted is None:
            return
        key, plan = self._probe_wanted
        path = str(Path(plan.model_dir).resolve())
        cold = path not in self._cold

        def run() -> tuple[str, str, bool, list[tuple[float, int]]]:
            from .._layers import browse_plan
            from ..render.lazy import check_uncertainty
            from .processes import time_blocks

            try:  # the lazy layers' graphs, ready for Add layer (off the GUI thread)
                browsed = browse_plan(plan)
                pre: dict[str, Any] = {"render": api.render_plan(browsed)}
                try:
                    check_uncertainty(api.open_model(plan.model_dir))
                    pre["uncertainty"] = api.render_plan(browsed, uncertainty=True)
                except SpatimeINRError:
                    pass
                self._prebuilt = {key: pre}  # only the latest plan's (replaced, not grown)
            except SpatimeINRError:  # a plan too large to browse: Add layer says why
                pass
            darr = api.render_plan(plan)
            nb = darr.numblocks
            mid = nb[0] // 2  # new instants, in the middle of the movie
            other = mid + 1 if mid + 1 < nb[0] else max(mid - 1, 0)
            first = darr.blocks[(mid,) + (0,) * (darr.ndim - 1)]
            second = darr.blocks[(other,) + (0,) * (darr.ndim - 1)]
            return key, path, cold, time_blocks([first, second], cold_model=path if cold else None)

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_probed)
        worker.errored.connect(lambda _err: self._probe_errors.add(key))
        worker.finished.connect(self._probe_finished)
        self._probe_worker = worker
        worker.start()

    def _on_probed(self, result: tuple[str, str, bool, list[tuple[float, int]]]) -> None:
        key, path, cold, [(s1, v1), (s2, v2)] = result
        self._probes[key] = v2 / max(s2, 1e-6)
        if cold:
            self._cold[path] = max(s1 - s2 * v1 / max(v2, 1), 0.0)
        if self._probe_wanted is not None and self._probe_wanted[0] == key:
            self._probe_wanted = None
        self.update_info()
        self.estimate_ready.emit()

    def _probe_finished(self) -> None:
        self._probe_worker = None
        if self._probe_wanted is not None:  # the plan changed meanwhile (or the probe failed)
            key = self._probe_wanted[0]
            if key not in self._probes and key not in self._probe_errors:
                self._probe_timer.start()

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
        ours = {_identity(ly) for ly in order}
        for ly in self.viewer.layers:
            if _identity(ly) not in ours and ly.visible:
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

    def job_script_suggestion(self) -> Path:
        """Where "Save job script…" proposes to write (beside the export)."""
        out = self.export_path()
        return out.with_name(f"{out.name.split('.')[0]}.render.sbatch")

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
        self._export_t0 = time.perf_counter()
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
        self.last_export_seconds = time.perf_counter() - self._export_t0
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
