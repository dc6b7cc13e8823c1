"""Train dock widget: pick a layer, check its physical sizes, train a model in a worker thread.

Everything the training does is :func:`napari_spatimeinr.api.train` (the same as ``spatimeinr
train``): this widget only collects a :class:`~napari_spatimeinr.core.config.TrainConfig`, runs the
generator in a superqt thread worker, and shows its :class:`Progress` records (progress bar, ETA,
loss and PSNR plot). Stop finishes the current step and keeps a usable model. The finished model is
added to the session's model registry, where the Render & Export widget finds it.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)
from superqt import QCollapsible
from superqt.utils import create_worker

from .. import api
from .._layers import META_KEY
from ..core.config import SpatimeINRParams, TrainConfig, build
from ..core.device import usable_devices
from ..core.errors import SpatimeINRError
from ..core.progress import Progress
from ..data.stack import ChannelStack, Stack4D
from . import quiet_gc
from .actions import CommandActions
from .forms import (
    ModelForm,
    breakable,
    default_model_dir,
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
    scroll_layout,
)
from .models import registry
from .processes import warm_up
from .train_plot import LossPlot
from .train_preview import LivePreview

if TYPE_CHECKING:
    import napari

METHOD_TIPS = {
    "spatimeinr": "SpatimeINR: learns a continuous model of your movie (needs training).",
    "cubic": "Cubic B-spline interpolation of the input (no training; a baseline).",
    "linear": "Linear interpolation of the input (no training; a baseline).",
    "nearest": "Nearest-neighbour copy of the input voxels (no training; a baseline).",
}


#: what each preset is, with its speed and needs (shown under the picker)
PRESET_INFO = {
    "fast": "fast: motion-compensated interpolation with a learned refiner. Quick and "
    "CPU-friendly: no GPU needed.",
    "paper": "paper: the published INR (implicit neural representation). Slow: needs a CUDA "
    "GPU (hours on a CPU).",
}


@functools.cache
def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


class TrainWidget(LivePreview, CommandActions, QWidget):
    """Train a model of an image layer (``napari-spatimeinr.train``)."""

    model_ready = Signal(str)  #: path of a model directory usable for rendering
    preview_ready = Signal(object)  #: the preview layer, after each refresh
    #: seconds between checkpoints (and so preview refreshes) when the preview is on
    preview_every = 10.0
    #: ms between adding the preview layer and starting the training process
    launch_delay_ms = 150
    #: train in a child process (:mod:`.processes`): the GUI thread never waits for the GIL
    in_process = True

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: Any = None
        self.model_dir: Path | None = None
        self.last_progress: Progress | None = None
        self._stop = False
        self._failure = ""
        self._out_auto = True
        self._preview_worker: Any = None
        self._preview_stamp = 0
        self._preview_layer: Any = None
        self._train_layer: Any = None
        self._gc_held = False
        #: set while the fields are filled from a layer (nothing to give back to it then)
        self._syncing = False
        #: what the last typed voxel size / frame interval did to the input layer (status line)
        self.world_note = ""
        self._world_timer = QTimer(self)
        self._world_timer.setSingleShot(True)
        self._world_timer.setInterval(150)  # once typing pauses, not at every key
        self._world_timer.timeout.connect(self.apply_physical)

        # -- input --------------------------------------------------------------------------
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip(
            "The image layer to model: one fluorescence channel, or a layer with a channel axis "
            "(axes with C, e.g. TCZYX: every channel, one model)."
        )
        self.channels_list = QListWidget()
        self.channels_list.setToolTip(
            "Other layers of the same acquisition (same shape) to model with the image layer as "
            "its channels: one model, one motion for all of them, every channel rendered."
        )
        self.channels_list.setMaximumHeight(72)
        self.axes_edit = QLineEdit()
        self.axes_edit.setToolTip(
            "Order of the layer's axes: T = time, Z = depth, Y, X = image plane.\n"
            "E.g. TZYX for a 3D time-lapse, TYX for a 2D time-lapse."
        )
        self.voxel_spins = []
        for axis in "ZYX":
            s = QDoubleSpinBox()
            s.setDecimals(3)
            s.setRange(1e-3, 1e4)
            s.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
            s.setToolTip(
                f"Voxel size along {axis} in micrometres (from the file; correct it here)."
            )
            self.voxel_spins.append(s)
        self.interval_spin = QDoubleSpinBox()
        self.interval_spin.setDecimals(3)
        self.interval_spin.setRange(1e-3, 1e6)
        self.interval_spin.setSuffix(" s")
        self.interval_spin.setToolTip("Time between two frames, in seconds.")

        # -- method --------------------------------------------------------------------------
        fields = TrainConfig.model_fields
        self.method_combo = QComboBox()
        for i, m in enumerate(("spatimeinr", "cubic", "linear", "nearest")):
            self.method_combo.addItem(m)
            self.method_combo.setItemData(i, METHOD_TIPS[m], Qt.ItemDataRole.ToolTipRole)
        self.method_combo.setToolTip(fields["method"].description)
        self.preset_combo = QComboBox()
        for i, name in enumerate(PRESET_INFO):
            self.preset_combo.addItem(name)
            self.preset_combo.setItemData(i, PRESET_INFO[name], Qt.ItemDataRole.ToolTipRole)
        self.preset_combo.setToolTip(fields["preset"].description)
        #: one line under the method/preset pickers: what the choice is, its speed and its needs
        self.engine_info = QLabel("")
        self.engine_info.setWordWrap(True)
        self.engine_info.setStyleSheet("color: grey;")
        self.time_spin = QDoubleSpinBox()
        self.time_spin.setRange(0, 7 * 24 * 3600)
        self.time_spin.setDecimals(0)
        self.time_spin.setSingleStep(30)
        self.time_spin.setSuffix(" s")
        self.time_spin.setSpecialValueText("no limit")
        self.time_spin.setToolTip(
            "Stop training after this many seconds; a usable model is kept. 'no limit': train "
            "for the preset's number of steps."
        )
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 10**8)
        self.steps_spin.setSingleStep(100)
        self.steps_spin.setSpecialValueText("preset's")
        self.steps_spin.setToolTip(fields["steps"].description)
        self.device_combo = QComboBox()
        self.device_combo.addItems(usable_devices())
        self.device_combo.setToolTip(
            "Where to train: auto uses a CUDA GPU if there is one, else an Apple GPU (mps), else "
            "the CPU. 'cuda' and 'mps' are offered only when that GPU is available."
        )
        self.preview_check = QCheckBox("Preview the slice in view while training")
        self.preview_check.setChecked(True)
        self.preview_check.setToolTip(
            "Every few seconds, show what the model makes of the slice in view (time point and "
            "depth of the sliders) as a layer named '… preview'."
        )
        self.advanced = ModelForm(SpatimeINRParams)
        self.advanced_box = QCollapsible("Advanced (SpatimeINR hyperparameters)")
        note = QLabel(
            "Only the chosen engine's settings are listed. Empty fields use the preset's value "
            "(shown in grey). Hover for meanings."
        )
        note.setWordWrap(True)
        self.advanced_box.addWidget(note)
        self.advanced_box.addWidget(self.advanced)

        # -- output --------------------------------------------------------------------------
        self.out_edit = QLineEdit()
        self.out_edit.setToolTip(
            "Folder the model is saved to (created; never overwritten). Default: beside the "
            "input file, or a temporary folder for layers without a file."
        )
        self.out_browse = QPushButton("…")
        self.out_browse.setToolTip("Choose the folder to save the model in.")
        self.out_browse.setMaximumWidth(32)

        # -- warm start --------------------------------------------------------------------------
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("none: start from scratch")
        self.init_edit.setToolTip(
            "A trained model folder to start from (a warm start, as train --init-from): its "
            "weights, preset and engine settings; it must be of the same kind of stack (2D+t or "
            "3D+t). Empty: start from scratch."
        )
        self.init_browse = QPushButton("Start from model…")
        self.init_browse.setToolTip("Choose a trained model folder to start from.")

        # -- run ------------------------------------------------------------------------------
        self.train_btn = QPushButton("Train")
        self.train_btn.setToolTip("Start training in the background (napari stays usable).")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Finish the current step and keep the model trained so far.")
        self.stop_btn.setEnabled(False)
        self.copy_btn = QPushButton("Copy command")
        self.copy_btn.setToolTip(
            "Copy the 'spatimeinr train' command line for these settings (paths quoted) to the "
            "clipboard: paste it into a terminal, e.g. on a cluster (docs/cluster.md)."
        )
        self.job_btn = QPushButton("Save job script…")
        self.job_btn.setToolTip(
            "Save a SLURM batch script that runs this training, with time, memory and GPU "
            "estimated for it; submit it with 'sbatch FILE' (docs/cluster.md)."
        )
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setToolTip("Training progress (steps done, or time used of the time limit).")
        self.status = QLabel("Pick an image layer.")
        self.status.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e06c6c;")
        self.plot = LossPlot()

        form = form_layout()
        form.addRow("Image layer", self.layer_combo)
        form.addRow("Also as channels", self.channels_list)
        form.addRow("Axes", self.axes_edit)
        vs_row = QHBoxLayout()
        for s in self.voxel_spins:
            vs_row.addWidget(s)
        vs_label = QLabel("Voxel size z, y, x (µm)")
        vs_label.setToolTip("Physical size of one voxel along z, y and x, in micrometres (µm).")
        form.addRow(vs_label, vs_row)
        form.addRow("Frame interval", self.interval_spin)
        form.addRow("Method", self.method_combo)
        form.addRow("Preset", self.preset_combo)
        form.addRow(self.engine_info)
        form.addRow("Time limit", self.time_spin)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Device", self.device_combo)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit)
        out_row.addWidget(self.out_browse)
        form.addRow("Save model to", out_row)
        init_row = QHBoxLayout()
        init_row.addWidget(self.init_edit, 1)
        init_row.addWidget(self.init_browse)
        form.addRow("Start from", init_row)
        for i in range(form.rowCount()):
            item = form.itemAt(i, form.ItemRole.LabelRole)
            field = form.itemAt(i, form.ItemRole.FieldRole)
            if item and field and field.widget() and not item.widget().toolTip():
                item.widget().setToolTip(field.widget().toolTip())
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_btn)
        buttons.addWidget(self.stop_btn)
        job_buttons = QHBoxLayout()
        job_buttons.addWidget(self.copy_btn)
        job_buttons.addWidget(self.job_btn)
        lay = scroll_layout(self)
        lay.addLayout(form)
        lay.addWidget(self.advanced_box)
        lay.addWidget(self.preview_check)
        lay.addLayout(buttons)
        lay.addLayout(job_buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.error_label)
        lay.addWidget(self.plot)
        lay.addStretch(1)
        relax_widths(self)
        fit_width(self)

        # -- wiring ---------------------------------------------------------------------------
        self.layer_combo.currentIndexChanged.connect(self._layer_changed)
        self.layer_combo.currentIndexChanged.connect(lambda *_: self._refresh_channels())
        self.channels_list.itemChanged.connect(self.validate)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)
        self.method_combo.currentTextChanged.connect(self._method_changed)
        self.preset_combo.currentTextChanged.connect(self._preset_changed)
        for w in (self.axes_edit, self.out_edit):
            w.textEdited.connect(self.validate)
        self.out_edit.textEdited.connect(self._out_edited)
        for w in (*self.voxel_spins, self.interval_spin, self.time_spin):
            w.valueChanged.connect(self.validate)
        for w in (*self.voxel_spins, self.interval_spin):
            w.valueChanged.connect(self._physical_edited)
        self.steps_spin.valueChanged.connect(self.validate)
        for c in (self.preset_combo, self.device_combo):
            c.currentTextChanged.connect(self.validate)
        self.advanced.connect_changed(self.validate)
        self.advanced.connect_changed(self._engine_changed)
        self.out_browse.clicked.connect(self._browse_out)
        self.init_browse.clicked.connect(self._browse_init)
        self.init_edit.textChanged.connect(self.validate)
        self.train_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.copy_btn.clicked.connect(self.copy_command)
        self.job_btn.clicked.connect(lambda: self.save_job_script())
        self._refresh_layers()
        self._preset_changed()
        self._method_changed()

    # -- layers ---------------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [
            ly
            for ly in self.viewer.layers
            if isinstance(ly, Image)
            and not ly.rgb
            and "AsyncArray" not in type(ly.data).__name__
            and "preview" not in ly.metadata
        ]

    def _refresh_layers(self, *_: Any) -> None:
        current = self.layer_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        if current not in names:
            self._layer_changed()
        self._refresh_channels()

    def _refresh_channels(self) -> None:
        """The other image layers, offered as further channels (those checked stay checked)."""
        checked = set(self.channel_layers_names())
        main = self.layer_combo.currentText()
        self.channels_list.blockSignals(True)
        self.channels_list.clear()
        for ly in self._image_layers():
            if ly.name == main:
                continue
            item = QListWidgetItem(ly.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if ly.name in checked else Qt.CheckState.Unchecked
            )
            self.channels_list.addItem(item)
        self.channels_list.blockSignals(False)

    def channel_layers_names(self) -> list[str]:
        """The names of the layers checked under *Also as channels*, in list order."""
        items = [self.channels_list.item(i) for i in range(self.channels_list.count())]
        return [it.text() for it in items if it.checkState() == Qt.CheckState.Checked]

    def set_channel_layers(self, names: list[str]) -> None:
        """Check exactly ``names`` under *Also as channels* (scripts and tests)."""
        for i in range(self.channels_list.count()):
            it = self.channels_list.item(i)
            on = it.text() in names
            it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def selected_layer(self) -> Any | None:
        name = self.layer_combo.currentText()
        return next((ly for ly in self._image_layers() if ly.name == name), None)

    def _layer_changed(self, *_: Any) -> None:
        layer = self.selected_layer()
        if layer is None:
            self.validate()
            return
        axes = layer_axes(layer)
        vs, fi = layer_physical(layer, axes)
        self._syncing = True  # the layer's own sizes: nothing to give back to it
        try:
            self.axes_edit.setText(axes)
            for s, v in zip(self.voxel_spins, vs, strict=True):
                s.setValue(v)
            self.interval_spin.setValue(fi)
        finally:
            self._syncing = False
        self._world_timer.stop()
        self.world_note = ""
        if self._out_auto:
            self.out_edit.setText(str(default_model_dir(layer)))
        self.validate()

    def _physical_edited(self, *_: Any) -> None:
        if not self._syncing:
            self._world_timer.start()

    def apply_physical(self) -> bool:
        """One world: give the voxel size and frame interval typed here to the input layer.

        The layer's scale (and its plugin metadata) take the typed values, so the input, the
        training preview and every render of the model (whose scale comes from the model's stored
        metadata, i.e. these values) overlay in world coordinates. Returns whether the layer
        changed; the status line says so.
        """
        self._world_timer.stop()
        layer = self.selected_layer()
        if layer is None:
            return False
        from ..data.axes import check_axes

        try:
            axes = check_axes(self.axes_edit.text().upper(), layer.ndim)
        except SpatimeINRError:
            return False
        vz, vy, vx = (float(s.value()) for s in self.voxel_spins)
        fi = float(self.interval_spin.value())
        typed = {"Z": vz, "Y": vy, "X": vx, "T": fi}
        old = [float(v) for v in layer.scale]
        new = [typed.get(a, v) for a, v in zip(axes, old, strict=False)]
        if np.allclose(new, old, rtol=1e-9, atol=0):
            return False
        layer.scale = new
        units = tuple("s" if a == "T" else "µm" for a in axes)
        if tuple(str(u) for u in getattr(layer, "units", units)) != units:
            try:  # in the units of the renders (napari ignores units that differ between layers)
                layer.units = units
                layer.axis_labels = tuple(a.lower() for a in axes)
            except (AttributeError, ValueError):  # pragma: no cover - older napari
                pass
        meta = layer.metadata.get(META_KEY)
        if isinstance(meta, dict):  # the writer and the widgets read the sizes from here too
            meta["voxel_size"] = [vz, vy, vx]
            meta["frame_interval"] = fi
        self.viewer.reset_view()  # the layer's physical extent changed: keep it in view
        what = f"{vz:g} × {vy:g} × {vx:g} µm" + (f", {fi:g} s per frame" if "T" in axes else "")
        self.world_note = f"The layer {layer.name!r} now has these sizes ({what})."
        if self.worker is None:
            self.status.setText(self.plan_text())
        return True

    def _out_edited(self, *_: Any) -> None:
        self._out_auto = False

    def _browse_out(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder to save the model in")
        if d:
            layer = self.selected_layer()
            name = default_model_dir(layer).name if layer is not None else "model.spatimeinr"
            self.out_edit.setText(str(Path(d) / name))
            self._out_auto = False
            self.validate()

    def _browse_init(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Start from a trained model")
        if d:
            self.init_edit.setText(d)

    def init_from(self) -> str | None:
        """The model folder to start from (``api.train(init_from=...)``), or None."""
        text = self.init_edit.text().strip()
        return text or None

    def _preset_changed(self, *_: Any) -> None:
        try:
            from ..engines.presets import PRESETS

            preset = self.preset_combo.currentText()
            values = PRESETS.get(preset, {})
        except ImportError:  # pragma: no cover - engine not installed
            values = {}
        steps = self._preset_steps()
        self.advanced.set_placeholders(values, f"{self.preset_combo.currentText()} preset")
        self.steps_spin.setSpecialValueText(f"preset's ({steps})" if steps else "preset's")
        self._engine_changed()

    def _engine_changed(self, *_: Any) -> None:
        """Show only the hyperparameters the chosen engine (preset, or the Motion field) reads."""
        self._describe_choice()
        try:
            from ..engines.presets import PRESETS, unused_fields
        except ImportError:  # pragma: no cover - engine not installed
            return
        motion = self.advanced.values().get(
            "motion", PRESETS.get(self.preset_combo.currentText(), {}).get("motion", False)
        )
        engine = "by the motion engine (fast)" if motion else "by the INR (paper)"
        self.advanced.set_unused(unused_fields(bool(motion)), engine)
        self._describe_choice()

    def _describe_choice(self) -> None:
        """The line under the pickers: what the chosen method/preset is, its speed, its needs."""
        method = self.method_combo.currentText()
        if method != "spatimeinr":
            self.engine_info.setText(METHOD_TIPS.get(method, ""))
            return
        preset = self.preset_combo.currentText()
        motion = self.advanced.values().get("motion")
        text = PRESET_INFO.get(preset, "")
        if motion is not None and motion != (preset == "fast"):  # the Motion field overrides
            other = "fast" if motion else "paper"
            text = (
                f"{preset} settings with the {other} engine (Advanced → Motion). "
                + (PRESET_INFO[other].split(": ", 1)[1])
            )
        if preset == "paper" and motion is not True and not _cuda_available():
            text += " No CUDA GPU was found here."
        self.engine_info.setText(text)

    def _method_changed(self, *_: Any) -> None:
        learned = self.method_combo.currentText() == "spatimeinr"
        for w in (
            self.preset_combo,
            self.time_spin,
            self.steps_spin,
            self.advanced_box,
            self.preview_check,
        ):
            w.setEnabled(learned)
        self._describe_choice()
        self.validate()

    # -- configuration ----------------------------------------------------------------------------
    def config_values(self) -> dict[str, Any]:
        """The training configuration as entered (validated by :meth:`config`)."""
        method = self.method_combo.currentText()
        values: dict[str, Any] = {"method": method, "device": self.device_combo.currentText()}
        if method == "spatimeinr":
            values["preset"] = self.preset_combo.currentText()
            if self.time_spin.value() > 0:
                values["time_limit"] = self.time_spin.value()
            if self.steps_spin.value() > 0:
                values["steps"] = self.steps_spin.value()
            if self.advanced.values():
                values["params"] = self.advanced.values()
            if self.preview_check.isChecked():  # checkpoints are what the preview shows
                values["checkpoint_every"] = self.preview_every
        return values

    def config(self) -> TrainConfig:
        return build(TrainConfig, self.config_values(), "training settings")

    def stack(self) -> Any:
        layer = self.selected_layer()
        if layer is None:
            raise SpatimeINRError("No image layer: open a stack (File → Open) or a sample first.")
        vs = tuple(s.value() for s in self.voxel_spins)
        fi = self.interval_spin.value()
        stack = layer_to_stack(layer, self.axes_edit.text(), vs, fi)
        others = [ly for ly in self._image_layers() if ly.name in self.channel_layers_names()]
        if not others:
            return stack
        if not isinstance(stack, Stack4D):
            raise SpatimeINRError(
                f"{layer.name!r} already has {stack.n} channels: uncheck the layers under Also "
                "as channels, or pick a single-channel layer."
            )
        chans = [stack]
        for ly in others:
            other = layer_to_stack(ly, layer_axes(ly), vs, fi)
            if not isinstance(other, Stack4D) or other.shape != stack.shape:
                what = other.shape if isinstance(other, Stack4D) else f"{other.n} channels"
                raise SpatimeINRError(
                    f"{ly.name!r} ({what}) cannot be a channel of {layer.name!r} {stack.shape}: "
                    "channels of one model have one shape each."
                )
            chans.append(other)
        layers = [layer, *others]
        colors = [str(getattr(getattr(ly, "colormap", None), "name", "gray")) for ly in layers]
        return ChannelStack(chans, [str(ly.name) for ly in layers], colors)

    def validate(self, *_: Any) -> bool:
        """Check layer, axes and settings; show the reason and disable Train when invalid."""
        problem = ""
        if _ and self.worker is None:  # the user edited something: forget the last failure
            self._failure = ""
        try:
            layer = self.selected_layer()
            if layer is None:
                raise SpatimeINRError("No image layer: open a stack or a sample first.")
            from ..data.axes import check_axes

            axes = check_axes(self.axes_edit.text().upper(), layer.ndim)
            cfg = self.config()
            out = self.out_edit.text().strip()
            if not out:
                raise SpatimeINRError("Choose a folder to save the model to.")
            if Path(out).exists():
                raise SpatimeINRError(f"{out} exists already: choose a new folder name.")
            if self.init_from():  # a missing or untrained model: said before Train
                from ..store.records import init_from_record

                init_from_record(self.init_from())
            from ..engines.presets import engine_of
            from ..limits import check_train  # the gate of the CLI and the API, up front

            size = dict(zip(axes, layer.data.shape, strict=False))
            check_train(tuple(size.get(a, 1) for a in "TZYX"), engine_of(cfg), out)
        except SpatimeINRError as err:
            problem = str(err)
        running = self.worker is not None
        self.error_label.setText(problem or self._failure)
        if (
            not running
            and self.status.text() in ("", "Pick an image layer.")
            or (not running and self.status.text().startswith("Ready"))
        ):
            self.status.setText(self.plan_text() if not problem else "Pick an image layer.")
        self.train_btn.setEnabled(not problem and not running)
        return not problem

    def plan_text(self) -> str:
        """What Train will do and cost, in words (shown before starting)."""
        layer = self.selected_layer()
        if layer is None:
            return "Pick an image layer."
        axes = self.axes_edit.text().upper()
        size = dict(zip(axes, layer.data.shape, strict=False))
        t, z, y, x = (size.get(a, 1) for a in "TZYX")
        what = f"{layer.name!r}: {t} frames × {z} × {y} × {x} voxels"
        method = self.method_combo.currentText()
        if method != "spatimeinr":
            note = f" {self.world_note}" if self.world_note else ""
            return f"Ready: {what}. {method} needs no training (the model is saved at once).{note}"
        limit = self.time_spin.value()
        steps = self.steps_spin.value() or self._preset_steps()
        until = f"{steps} steps" if steps else "the preset's number of steps"
        if limit:
            until = f"{fmt_duration(limit)} or {until}, whichever comes first"
        split = ""
        if self.preset_combo.currentText() == "fast" and z > 1:
            share = "all" if t == 1 else "half"
            split = f" The z decoder (space) trains first on {share} of it, then time."
        note = f" {self.world_note}" if self.world_note else ""
        return (
            f"Ready: {what}. Trains for {until}.{split} Stop keeps the model trained so far.{note}"
        )

    def _preset_steps(self) -> int | None:
        try:
            from ..engines.presets import PRESET_STEPS
        except ImportError:  # pragma: no cover - engine not installed
            return None
        return PRESET_STEPS.get(self.preset_combo.currentText())

    # -- the same training elsewhere: a command line, a batch job ---------------------------------------
    def command_argv(self) -> list[str]:
        """The ``spatimeinr train`` argv of the current settings (raises SpatimeINRError when the
        layer has no file, or the settings are invalid)."""
        from ..workflows.jobs import file_axes, train_argv

        layer = self.selected_layer()
        if layer is None:
            raise SpatimeINRError("No image layer: open a stack (File → Open) first.")
        source = layer_source(layer)
        if not source:
            raise SpatimeINRError(
                f"The layer {layer.name!r} was not read from a file, so a command cannot name it: "
                "save it (File → Save Selected Layers…, as .tif), open that file and copy again."
            )
        out = self.out_edit.text().strip()
        if not out:
            raise SpatimeINRError("Choose a folder to save the model to.")
        meta = layer_meta(layer)
        source_axes = meta.get("source_axes") if meta.get("axes") else None
        axes = file_axes(layer_axes(layer), self.axes_edit.text(), source_axes)
        return train_argv(
            source,
            out,
            self.config(),
            axes=axes,
            voxel_size=tuple(s.value() for s in self.voxel_spins),  # type: ignore[arg-type]
            frame_interval=self.interval_spin.value(),
            init_from=self.init_from(),
        )

    def job_script(self) -> str:
        """The SLURM batch script of the current settings (see :func:`..jobs.slurm_script`)."""
        from ..workflows.jobs import slurm_script, train_resources

        argv = self.command_argv()
        layer = self.selected_layer()
        size = dict(zip(self.axes_edit.text().upper(), layer.data.shape, strict=False))
        shape = tuple(int(size.get(a, 1)) for a in "TZYX")
        resources = train_resources(shape, self.config())  # type: ignore[arg-type]
        name = Path(self.out_edit.text().strip()).name.split(".")[0] or "model"
        return slurm_script(argv, resources, job_name=f"spatimeinr-train-{name}")

    def job_script_suggestion(self) -> Path:
        """Where "Save job script…" proposes to write (beside the model directory)."""
        out = Path(self.out_edit.text().strip())
        return out.parent / f"{out.name.split('.')[0] or 'model'}.train.sbatch"

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start training in a worker thread (no-op with the reason shown if settings are invalid)."""
        if self.worker is not None or not self.validate():
            return
        self.apply_physical()  # the input layer takes what was just typed
        try:
            stack = self.stack()
            cfg = self.config()
        except SpatimeINRError as err:
            self._fail(str(err))
            return
        out = Path(self.out_edit.text().strip())
        self.model_dir = out
        self._train_layer = self.selected_layer()
        self._preview_stamp = 0
        self._stop = False
        self._failure = ""
        self.last_progress = None
        self.plot.clear()
        self.progress.setValue(0)
        self.status.setText(f"Starting {cfg.method} on {stack.name} {stack.shape}…")
        time_limit = cfg.time_limit
        init = self.init_from()
        clicked = time.time()  # the time limit counts from the click (process start-up included)

        def run() -> Any:
            if self.in_process:
                from .processes import train_in_process

                yield from train_in_process(
                    stack, out, cfg, stop=lambda: self._stop, init_from=init, started=clicked
                )
            else:
                yield from api.train(stack, out, cfg, stop=lambda: self._stop, init_from=init)

        # full garbage collections took 360 ms of the GUI thread while training: objects alive
        # now are left out of them from the click on (the preview layer is added next)
        quiet_gc.hold()
        self._gc_held = True
        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(lambda p: self._on_progress(p, time_limit))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.train_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        if self.preview_check.isChecked() and cfg.method == "spatimeinr":
            # First the preview layer, in its own turn of the event loop (napari builds its
            # controls and visual, the canvas draws it once) while the CPU is free; then the
            # training and render processes start, whose imports take every core for seconds.
            QTimer.singleShot(
                0, functools.partial(self._add_preview_layer, stack.name, stack.shape)
            )
            QTimer.singleShot(self.launch_delay_ms, functools.partial(self._launch, worker))
        else:
            self._launch(worker, previews=False)

    def _launch(self, worker: Any, previews: bool = True) -> None:
        if worker is not self.worker:  # pragma: no cover - ended before it started
            return
        if previews:
            warm_up()  # the render process of the previews starts while the model trains
        worker.start()

    def stop(self) -> None:
        """Ask the training to stop after the current step (the model stays usable)."""
        if self.worker is not None:
            self._stop = True
            self.stop_btn.setEnabled(False)
            self.status.setText("Stopping after the current step…")

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _on_progress(self, p: Progress, time_limit: float | None) -> None:
        self.last_progress = p
        frac = p.fraction
        if frac is None and time_limit:
            frac = min(1.0, p.seconds / time_limit)
        if p.done:
            frac = 1.0
        if frac is not None:
            self.progress.setValue(int(round(frac * 1000)))
        parts = [f"step {p.step}" + (f"/{p.total}" if p.total else "")]
        parts.append(f"{fmt_seconds(p.seconds)} elapsed")
        if p.eta is not None and not p.done:
            parts.append(f"{fmt_seconds(p.eta)} left")
        if p.loss is not None:
            parts.append(f"loss {p.loss:.4g}")
        if p.psnr is not None:
            parts.append(f"PSNR {p.psnr:.1f} dB")
        if p.message:
            parts.append(p.message)
        self.status.setText(" · ".join(parts))
        if p.loss is not None or p.psnr is not None:
            self.plot.add(p)
        self.maybe_preview()

    def _on_error(self, err: BaseException) -> None:
        text = str(err) if isinstance(err, SpatimeINRError) else f"{type(err).__name__}: {err}"
        self._fail(f"Training failed: {text}")

    def _fail(self, text: str) -> None:
        self._failure = text
        super()._fail(text)

    def _on_finished(self) -> None:
        self.worker = None
        if self._gc_held:
            self._gc_held = False
            quiet_gc.release()
        self.stop_btn.setEnabled(False)
        out = self.model_dir
        if out is not None and (out / "meta.json").is_file():
            md = api.open_model(out)
            stopped = " (stopped early)" if self._stop else ""
            self.status.setText(
                breakable(f"Model saved{stopped}: {out}  →  use Render & Export to view it.")
            )
            self.progress.setValue(1000)
            registry().add(md.path)
            self.model_ready.emit(str(md.path))
        self.remove_preview()  # the model's own (lazy) layer replaces it: see Render & Export
        self.plot.finish()
        self._out_auto = True
        layer = self.selected_layer()
        if layer is not None:
            self.out_edit.setText(str(default_model_dir(layer)))
        self.validate()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self._stop = True
        super().closeEvent(event)
