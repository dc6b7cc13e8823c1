"""Quality control dock widget: a hold-out check of a method against interpolation baselines.

Pick an image layer, a task (temporal: withhold frames; spatial: mean-pool), a factor and a method;
the check runs :func:`napari_spatimeinr.workflows.evaluate.run_evaluation` in a worker thread (progress bar,
Stop), then shows the per-method table and the per-frame PSNR of the method against cubic (and the
best baseline), and adds three layers at the physical scale of the input: the withheld truth, the
reconstruction and its absolute error. "Save report…" writes the JSON, CSV and PNG of the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)
from superqt.utils import create_worker

from ..core.errors import SpatimeINRError
from ..core.progress import Progress
from ..data.axes import check_axes
from ..workflows.evaluate.protocol import METHODS, EvalResult, run_evaluation
from ..workflows.evaluate.report import plot_report, plot_uncertainty, write_report
from ..workflows.evaluate.withhold import plan_shapes
from .actions import show_error
from .forms import fit_width, form_layout, layer_to_stack, relax_widths, scroll_layout
from .processes import iterate_in_process
from .train import METHOD_TIPS, PRESET_INFO

if TYPE_CHECKING:
    import napari

TABLE_COLUMNS = ("method", "PSNR (dB)", "SSIM", "Δ best (dB)", "train (s)", "note")


# -- layer <-> TZYX ----------------------------------------------------------------------------
def guess_axes(ndim: int, task: str) -> str:
    """Axis letters for a layer without axis metadata (3D: TYX for a temporal task, else ZYX)."""
    if ndim == 3:
        return "TYX" if task == "temporal" else "ZYX"
    return {2: "YX", 4: "TZYX", 5: "TCZYX"}.get(ndim, "TZYX")


#: metadata key of layers made by this plugin (see ``_layers.py``): axes, physical metadata, source
META_KEY = "spatimeinr"


def layer_axes(layer: Any, task: str) -> str:
    """The axes of a layer: from the plugin's metadata, else its axis labels, else a guess."""
    ndim = int(layer.ndim)
    axes = str((getattr(layer, "metadata", None) or {}).get(META_KEY, {}).get("axes", "")).upper()
    if len(axes) == ndim:
        return axes
    labels = [str(a).upper() for a in (getattr(layer, "axis_labels", None) or ())]
    if len(labels) == ndim and all(len(a) == 1 and a in "TCZYX" for a in labels):
        if len(set(labels)) == ndim:
            return "".join(labels)
    return guess_axes(ndim, task)


def layer_axes_shape(shape: tuple[int, ...], axes: str) -> tuple[int, int, int, int]:
    """The TZYX shape of a layer of ``shape`` read with ``axes`` (absent T/Z are 1)."""
    axes = check_axes(axes, len(shape))  # a channel axis C: the shape of each channel
    return tuple(int(shape[axes.index(a)]) if a in axes else 1 for a in "TZYX")  # type: ignore[return-value]


def from_tzyx(a: np.ndarray, axes: str) -> np.ndarray:
    """Back from TZYX to a layer's ``axes`` order (T and Z absent from ``axes`` are dropped)."""
    present = "".join(c for c in "TZYX" if c in axes)
    drop = tuple(i for i, c in enumerate("TZYX") if c not in axes)
    out = a.reshape(tuple(n for i, n in enumerate(a.shape) if i not in drop))
    return np.transpose(out, [present.index(c) for c in axes])


def tzyx_to_axes(values: tuple[float, ...], axes: str) -> tuple[float, ...]:
    return tuple(values["TZYX".index(c)] for c in axes)


def layer_units(layer: Any) -> dict[str, Any]:
    """``axis_labels`` and ``units`` of a layer (napari ignores units when layers disagree)."""
    out: dict[str, Any] = {}
    for key in ("axis_labels", "units"):
        value = getattr(layer, key, None)
        if value is not None:
            out[key] = tuple(value)
    return out


# -- the widget --------------------------------------------------------------------------------
class QCWidget(QWidget):
    """Hold-out quality control of a reconstruction against interpolation baselines."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: EvalResult | None = None
        self.worker: Any = None
        self._stop = False
        self._axes_for: dict[str, str] = {}

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The image layer to check (one channel).")
        self.axes_edit = QLineEdit()
        self.axes_edit.setToolTip(
            "Axis letters of the layer, e.g. TZYX, TYX (a 2D time-lapse) or ZYX (a volume)."
        )
        self.task_combo = QComboBox()
        self.task_combo.addItems(["temporal", "spatial"])
        self.task_combo.setToolTip(
            "temporal: keep frames 0, k, 2k, … and score the left-out frames. spatial: mean-pool "
            "by k and score against the original."
        )
        self.factor_spin = QSpinBox()
        self.factor_spin.setRange(2, 16)
        self.factor_spin.setValue(4)
        self.factor_spin.setToolTip("Withholding factor k.")
        self.z_only_check = QCheckBox("z only")
        self.z_only_check.setToolTip("Spatial task: pool along z only (axial super-resolution).")
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(["fast", "paper"])
        self.time_spin = QDoubleSpinBox()
        self.time_spin.setRange(0, 7 * 24 * 3600)
        self.time_spin.setDecimals(0)
        self.time_spin.setValue(300)
        self.time_spin.setSuffix(" s")
        self.time_spin.setSpecialValueText("preset default")
        self.time_spin.setToolTip("Stop training after this many seconds (0: the preset's steps).")

        form = form_layout()
        form.addRow("Layer", self.layer_combo)
        form.addRow("Axes", self.axes_edit)
        task_row = QHBoxLayout()
        task_row.addWidget(self.task_combo)
        task_row.addWidget(QLabel("×"))
        task_row.addWidget(self.factor_spin)
        task_row.addWidget(self.z_only_check)
        form.addRow("Task", task_row)
        form.addRow("Method", self.method_combo)
        form.addRow("Preset", self.preset_combo)
        #: what the chosen method/preset is, its speed and needs (as in the Train tab)
        self.engine_info = QLabel("")
        self.engine_info.setWordWrap(True)
        self.engine_info.setStyleSheet("color: grey;")
        form.addRow(self.engine_info)
        form.addRow("Time limit", self.time_spin)

        self.plan_label = QLabel()
        self.plan_label.setWordWrap(True)
        self.run_button = QPushButton("Run check")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.6), dpi=90, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(210)
        self.canvas.setVisible(False)  # no empty axes: shown with the first result
        self.table.setVisible(False)
        self.save_button = QPushButton("Save report…")
        self.save_button.setEnabled(False)

        layout = scroll_layout(self)
        layout.addLayout(form)
        layout.addWidget(self.plan_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table)
        layout.addWidget(self.canvas)
        layout.addWidget(self.save_button)
        layout.addStretch(1)
        relax_widths(self)
        fit_width(self)

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(lambda: self.save_report())
        self.layer_combo.currentTextChanged.connect(self._layer_changed)
        self.axes_edit.textEdited.connect(self._axes_edited)
        for sig in (
            self.task_combo.currentTextChanged,
            self.method_combo.currentTextChanged,
            self.z_only_check.toggled,
            self.factor_spin.valueChanged,
            self.time_spin.valueChanged,
            self.preset_combo.currentTextChanged,
        ):
            sig.connect(self._update_plan)
        self.task_combo.currentTextChanged.connect(self._task_changed)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh_layers)
        self._refresh_layers()
        self._task_changed()

    # -- parameters -----------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def _refresh_layers(self, *_: Any) -> None:
        current = self.layer_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._layer_changed()

    def selected_layer(self) -> Any | None:
        name = self.layer_combo.currentText()
        for ly in self._image_layers():
            if ly.name == name:
                return ly
        return None

    def _layer_changed(self, *_: Any) -> None:
        layer = self.selected_layer()
        if layer is not None:
            axes = self._axes_for.get(layer.name) or layer_axes(layer, self.task)
            self.axes_edit.setText(axes)
        self._update_plan()

    def _axes_edited(self, text: str) -> None:
        layer = self.selected_layer()
        if layer is not None:
            self._axes_for[layer.name] = text.strip().upper()
        self._update_plan()

    def _task_changed(self, *_: Any) -> None:
        spatial = self.task == "spatial"
        self.z_only_check.setEnabled(spatial)
        if not spatial:
            self.z_only_check.setChecked(False)
        self._layer_changed()

    @property
    def task(self) -> str:
        return self.task_combo.currentText()

    def request(self) -> dict[str, Any]:
        """The run_evaluation arguments the widget's fields describe (validated, no data read)."""
        layer = self.selected_layer()
        if layer is None:
            raise SpatimeINRError("Open or pick an image layer first.")
        axes = self.axes_edit.text().strip().upper()
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        shape = layer_axes_shape(tuple(data.shape), axes)
        z_only = self.z_only_check.isChecked() and self.task == "spatial"
        plan_shapes(shape, self.task, self.factor_spin.value(), z_only)
        limit = self.time_spin.value()
        return {
            "task": self.task,
            "factor": self.factor_spin.value(),
            "z_only": z_only,
            "method": self.method_combo.currentText(),
            "preset": self.preset_combo.currentText(),
            "time_limit": float(limit) if limit > 0 else None,
            "axes": axes,
            "shape": shape,
        }

    def _update_plan(self, *_: Any) -> None:
        method = self.method_combo.currentText()
        self.engine_info.setText(
            PRESET_INFO.get(self.preset_combo.currentText(), "")
            if method == "spatimeinr"
            else METHOD_TIPS.get(method, f"{method}: a baseline (no training).")
        )
        self.preset_combo.setEnabled(method == "spatimeinr")
        self.time_spin.setEnabled(method == "spatimeinr")
        busy = self.worker is not None
        try:
            req = self.request()
        except SpatimeINRError as err:
            self.plan_label.setText(f"<span style='color:#e06c5a'>{err}</span>")
            self.run_button.setEnabled(False)
            return
        inp, truth, n_scored = plan_shapes(req["shape"], req["task"], req["factor"], req["z_only"])
        what = (
            f"spatimeinr ({req['preset']}), training "
            + (f"up to {req['time_limit']:g} s" if req["time_limit"] else "for the preset's steps")
            if method == "spatimeinr"
            else f"{method} (no training)"
        )
        mb = 4 * int(np.prod(truth)) / 1e6
        self.plan_label.setText(
            f"Input T,Z,Y,X = {inp} → truth {truth}, {n_scored} scored frame(s). {what}; "
            f"about {mb * 9:.0f} MB of memory for the truth and the reconstructions."
        )
        self.run_button.setEnabled(not busy)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self.stop()
        super().closeEvent(event)

    # -- running --------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the check in a worker thread."""
        if self.worker is not None:
            return
        try:
            req = self.request()
            stack = layer_to_stack(self.selected_layer(), req["axes"])
        except SpatimeINRError as err:
            self._fail(str(err))
            return
        self.result = None
        self._stop = False
        self._axes = req["axes"]
        self._layer_translate = tuple(self.selected_layer().translate)
        self._layer_units = layer_units(self.selected_layer())
        if "C" in self._axes:  # every channel is checked; the layers show channel 0
            ci = self._axes.index("C")
            self._axes = self._axes.replace("C", "")
            self._layer_translate = tuple(v for i, v in enumerate(self._layer_translate) if i != ci)
            self._layer_units = {}
        kwargs = {k: req[k] for k in ("task", "factor", "z_only", "method", "preset", "time_limit")}

        def job():
            # in a child process: the check trains and renders, which would stall napari's GUI
            yield from iterate_in_process(run_evaluation, stack, stop=lambda: self._stop, **kwargs)

        self.worker = create_worker(job, _start_thread=False)
        self.worker.yielded.connect(self._on_item)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.save_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.status_label.setText("Starting…")
        self.worker.start()

    def stop(self) -> None:
        """Ask the running check to stop at its next step (no result is produced)."""
        if self.worker is not None:
            self._stop = True
            self.status_label.setText("Stopping…")
            self.stop_button.setEnabled(False)

    def _on_item(self, item: Progress | EvalResult) -> None:
        if isinstance(item, EvalResult):
            self.result = item
            self._show_result(item)
            return
        if item.total:
            self.progress.setRange(0, int(item.total))
            self.progress.setValue(min(int(item.step), int(item.total)))
        else:
            self.progress.setRange(0, 0)
        msg = item.message or ""
        if item.eta:
            msg += f" — about {item.eta:.0f} s left"
        self.status_label.setText(msg)

    def _on_error(self, err: BaseException) -> None:
        text = str(err) if isinstance(err, SpatimeINRError) else f"{type(err).__name__}: {err}"
        self._fail(text)

    def _fail(self, text: str) -> None:
        show_error(None, text)
        self.status_label.setText(f"<span style='color:#e06c5a'>{text}</span>")

    def _on_finished(self) -> None:
        self.worker = None
        self.stop_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.result is not None else 0)
        if self.result is None and self._stop:
            self.status_label.setText("Stopped: no result.")
        self._update_plan()

    # -- results --------------------------------------------------------------------------------
    def _show_result(self, res: EvalResult) -> None:
        rep = res.report
        self.table.setVisible(True)
        self.canvas.setVisible(True)
        self.fill_table(rep)
        self.draw_plot(rep)
        self.add_layers(res)
        self.save_button.setEnabled(True)
        m = rep["results"][rep["method"]]
        best = rep.get("best_baseline")
        line = f"Done: {rep['method']} {m['psnr'] or float('inf'):.2f} dB"
        if best:
            bp = rep["results"][best]["psnr"]
            line += f", best baseline {best} {bp or float('inf'):.2f} dB"
        if rep.get("channels"):  # one model of every channel, scored per channel
            parts = []
            for g in rep["channels"]:
                mp = g["results"][rep["method"]]["psnr"]
                bb = g.get("best_baseline")
                bp = g["results"][bb]["psnr"] if bb else None
                parts.append(
                    f"{g['name']} {mp or float('inf'):.2f} dB"
                    + (f" (best baseline {bb} {bp or float('inf'):.2f})" if bb else "")
                )
            line = (
                f"Done: {rep['method']}, one model of {len(parts)} channels: {'; '.join(parts)}. "
                f"Layers: channel {rep['channels'][0]['name']}."
            )
        self.status_label.setText(line)

    def fill_table(self, rep: dict[str, Any]) -> None:
        """One row per method and baseline; for a multi-channel stack, per channel
        (``channel · method``), each compared with its own channel's best baseline."""
        groups = rep.get("channels") or [
            {"name": "", "results": rep["results"], "best_baseline": rep.get("best_baseline")}
        ]
        rows = [
            (f"{g['name']} · {name}" if g["name"] else name, name, e, g)
            for g in groups
            for name, e in g["results"].items()
        ]
        self.table.setRowCount(len(rows))
        for row, (label, name, e, g) in enumerate(rows):
            results, best = g["results"], g.get("best_baseline")
            best_psnr = results[best]["psnr"] if best in results else None
            note = []
            if name == rep["method"]:
                note.append("evaluated")
            if name == best:
                note.append("best baseline")
            if name == "smoothed" and "base" in e:
                note.append(f"{e['base']}, σ {e['sigma']:g}")
            delta = e["psnr"] - best_psnr if None not in (e["psnr"], best_psnr) else None
            cells = [
                label,
                "—" if e["psnr"] is None else f"{e['psnr']:.2f}",
                "—" if e["ssim"] is None else f"{e['ssim']:.4f}",
                "—" if delta is None else f"{delta:+.2f}",
                f"{e['train_seconds']:.1f}" if name == rep["method"] else "",
                "; ".join(note),
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col in (1, 2, 3, 4):
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, col, item)

        header = self.table.horizontalHeader().height()
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setMinimumHeight(min(header + rows + 6, 320))

    def draw_plot(self, rep: dict[str, Any]) -> None:
        self.figure.clear()
        with_unc = bool(rep.get("uncertainty", {}).get("per_frame"))
        ax = self.figure.add_subplot(211 if with_unc else 111)
        names = [rep["method"], "cubic", rep.get("best_baseline")]
        names = [n for i, n in enumerate(names) if n and n in rep["results"] and n not in names[:i]]
        # several frames: the method against cubic (and the best baseline); one frame: all bars
        plot_report(rep, ax, names if len(rep.get("scored_frames", [])) > 1 else None)
        if with_unc:  # per frame: mean predicted uncertainty next to the held-out error
            plot_uncertainty(rep, self.figure.add_subplot(212))
        self.canvas.setMinimumHeight(400 if with_unc else 210)
        self.canvas.draw_idle()

    def _put_layer(self, data: np.ndarray, name: str, **kwargs: Any) -> Any:
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            for key in ("scale", "translate", "contrast_limits", "axis_labels", "units"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return layer
        return self.viewer.add_image(data, name=name, **kwargs)

    def add_layers(self, res: EvalResult) -> list[Any]:
        """Add (or update) the truth, reconstruction and |error| layers at the input's scale."""
        rep = res.report
        axes = self._axes
        base = self.layer_combo.currentText() or "stack"
        scale = tzyx_to_axes(res.truth_scale, axes)
        translate = getattr(self, "_layer_translate", None) or (0.0,) * len(axes)
        low, high = rep["intensity_range"]
        common = {
            "scale": scale,
            "translate": translate,
            **getattr(self, "_layer_units", {}),  # the input's: no "inconsistent units"
        }
        k = rep["factor"]
        tag = f"{rep['task']} ×{k}"
        layers = [
            self._put_layer(
                from_tzyx(res.truth, axes),
                f"{base} QC truth ({tag})",
                contrast_limits=(low, high),
                **common,
            ),
            self._put_layer(
                from_tzyx(res.reconstructions[res.method], axes),
                f"{base} QC {res.method} ({tag})",
                contrast_limits=(low, high),
                **common,
            ),
            self._put_layer(
                from_tzyx(res.error(), axes),
                f"{base} QC |error| {res.method} ({tag})",
                contrast_limits=(0.0, max((high - low) / 4, 1e-12)),
                colormap="inferno",
                **common,
            ),
        ]
        if res.uncertainty is not None:  # beside |error|, on the same contrast
            layers.append(
                self._put_layer(
                    from_tzyx(res.uncertainty, axes),
                    f"{base} QC uncertainty {res.method} ({tag})",
                    contrast_limits=(0.0, max((high - low) / 4, 1e-12)),
                    colormap="inferno",
                    **common,
                )
            )
        return layers

    def save_report(self, path: str | Path | None = None) -> tuple[Path, Path, Path] | None:
        """Write the JSON, CSV and PNG report (asks for a file name when ``path`` is None)."""
        if self.result is None:
            return None
        if path is None:
            default = f"{self.layer_combo.currentText() or 'stack'}_qc.json"
            path, _ = QFileDialog.getSaveFileName(
                self, "Save QC report", default, "QC report (*.json)"
            )
            if not path:
                return None
        try:
            paths = write_report(self.result.report, path)
        except (SpatimeINRError, OSError) as err:
            self._fail(str(err))
            return None
        self.status_label.setText(f"Report written: {paths[0]} (+ .csv, .png)")
        return paths
