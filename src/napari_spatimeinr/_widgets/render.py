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
    QProgressBar,
    QPushButton,
    QWidget,
)

from .. import api
from .._layers import METHOD_LABELS
from ..core.config import RenderConfig, build
from ..core.coords import spatial_size
from ..core.errors import LimitError, SpatimeINRError
from ..core.text import fmt_bytes
from ..engines.zdecoder import summary as spatial_summary
from ..io.formats import SUPPORTED_WRITE_SUFFIXES, suffix_of
from ..render.lazy import uncertainty_path
from .actions import CommandActions
from .forms import (
    file_stem,
    fit_width,
    fmt_duration,
    form_layout,
    relax_widths,
    scroll_layout,
)
from .models import registry
from .render_apply import ApplyToLayer
from .render_common import APPLY_OWN, GRID_SPACER, MOTION_TIP, ROI_VIEW, ROI_WHOLE, Pending
from .render_export import ExportActions
from .render_grid import SideBySide
from .render_layers import RenderLayers

if TYPE_CHECKING:
    import napari

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


__all__ = ["APPLY_OWN", "GRID_SPACER", "MOTION_TIP", "ROI_VIEW", "ROI_WHOLE", "RenderWidget"]


class RenderWidget(SideBySide, RenderLayers, ApplyToLayer, ExportActions, CommandActions, QWidget):
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
        self._last_channels: list[tuple[Any, Any]] = []  # (plan, model) of each channel layer
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
        except Pending:
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
        except Pending as err:  # not an error: the chosen layer is being prepared
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
        size = f"≈ {fmt_bytes(disk)}" + (f" + {fmt_bytes(disk)} (uncertainty)" if files > 1 else "")
        return (
            f"Output: {t} frames × {z} × {y} × {x} voxels\n"
            f"{m.voxel_size[0]:.3g} × {m.voxel_size[1]:.3g} × {m.voxel_size[2]:.3g} µm, "
            f"{m.frame_interval:.3g} s per frame\n"
            f"{size} on disk ({dtype}); {when}"
        )
