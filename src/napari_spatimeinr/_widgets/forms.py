"""Small building blocks of the dock widgets: layer ↔ stack, typed forms from pydantic models."""

from __future__ import annotations

import math
import re
import tempfile
import typing
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .._layers import META_KEY
from ..core.errors import SpatimeINRError
from ..data.axes import check_axes, to_tzyx
from ..data.stack import ChannelStack, Stack4D

_AXES_BY_NDIM = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}


# -- layers ------------------------------------------------------------------------------------
def layer_meta(layer: Any) -> dict[str, Any]:
    """The plugin's metadata entry of a layer (empty for layers from elsewhere)."""
    return dict((getattr(layer, "metadata", None) or {}).get(META_KEY) or {})


def layer_axes(layer: Any) -> str:
    """Axis letters of a layer: from the plugin's metadata, else guessed from its dimensionality."""
    axes = layer_meta(layer).get("axes")
    if axes and len(axes) == layer.ndim:
        return str(axes)
    return _AXES_BY_NDIM.get(layer.ndim, "TZYX")


def layer_physical(layer: Any, axes: str) -> tuple[tuple[float, float, float], float]:
    """(voxel size (z, y, x) in µm, frame interval in s) from a layer's scale, by axis letter."""
    by_axis = dict(zip(axes, (float(s) for s in layer.scale), strict=False))
    vs = tuple(by_axis.get(a, 1.0) for a in "ZYX")
    return vs, by_axis.get("T", 1.0)  # type: ignore[return-value]


def layer_source(layer: Any) -> str:
    """The file a layer was read from ("" when it has none)."""
    path = layer_meta(layer).get("source_path") or getattr(
        getattr(layer, "source", None), "path", None
    )
    return str(path or "")


def layer_to_stack(
    layer: Any,
    axes: str,
    voxel_size: tuple[float, float, float] | None = None,
    frame_interval: float | None = None,
) -> Stack4D | ChannelStack:
    """A TZYX :class:`Stack4D` of an image layer read with ``axes``: the one conversion of the
    widgets (Train, Render & Export, Quality control). The physical sizes are the given ones, else
    the layer's scale; the origin is where the layer is (its translate). A layer read with a
    channel axis ``C`` (of two or more channels) gives a :class:`ChannelStack`."""
    if voxel_size is None or frame_interval is None:
        vs, fi = layer_physical(layer, axes.upper())
        voxel_size = vs if voxel_size is None else voxel_size
        frame_interval = fi if frame_interval is None else frame_interval
    if getattr(layer, "rgb", False):
        raise SpatimeINRError(f"{layer.name!r} is an RGB image: pick a fluorescence layer.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    axes = check_axes(axes.upper(), data.ndim)
    meta = layer_meta(layer)
    # one world: the model's origin is where the layer is (its translate, by axis letter)
    origin = [float(v) for v in meta.get("origin", (0.0, 0.0, 0.0, 0.0))]
    placed = dict(zip(axes, (float(v) for v in getattr(layer, "translate", ())), strict=False))
    origin = [placed.get(a, o) for a, o in zip("TZYX", origin, strict=True)]
    if "C" in axes:  # a layer with a channel axis: every channel, one model (issue 23)
        ci = axes.index("C")
        rest = axes.replace("C", "")
        arr = np.asarray(data)
        chans = [
            Stack4D(
                to_tzyx(np.take(arr, c, axis=ci), rest),
                voxel_size=voxel_size,
                frame_interval=frame_interval,
                source_axes=axes,
                name=str(layer.name),
                source_path=layer_source(layer),
                source_sha256=str(meta.get("source_sha256", "")),
                origin=tuple(origin),  # type: ignore[arg-type]
            ).validate()
            for c in range(arr.shape[ci])
        ]
        if len(chans) == 1:
            return chans[0]
        return ChannelStack(chans)
    return Stack4D(
        to_tzyx(np.asarray(data), axes),
        voxel_size=voxel_size,
        frame_interval=frame_interval,
        source_axes=axes,
        name=str(layer.name),
        source_path=layer_source(layer),
        source_sha256=str(meta.get("source_sha256", "")),
        origin=tuple(origin),  # type: ignore[arg-type]
    ).validate()


#: characters no file name may hold on Linux, macOS or Windows
_NOT_IN_FILE_NAMES = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def file_stem(name: str, fallback: str = "render") -> str:
    """A readable file-name stem for a stack or model name: spaces kept, path separators and the
    characters Windows refuses replaced by ``_`` (a name like "movie t/4" is not a path)."""
    return _NOT_IN_FILE_NAMES.sub("_", name).strip(" .") or fallback


def default_model_dir(layer: Any) -> Path:
    """Beside the input file (``<stem>.spatimeinr``), else in a new temporary folder; never taken."""
    src = layer_source(layer)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(layer.name)) or "model"
    if src and Path(src).parent.is_dir():
        base = Path(src).parent
        stem = Path(src).name.split(".")[0] or stem
    else:
        base = Path(tempfile.mkdtemp(prefix="spatimeinr-"))
    cand = base / f"{stem}.spatimeinr"
    n = 2
    while cand.exists():
        cand = base / f"{stem}_{n}.spatimeinr"
        n += 1
    return cand


def remove_layers(viewer: Any, layers: Any) -> None:
    """Remove ``layers`` from ``viewer`` without the long full garbage collection napari runs then.

    napari calls ``gc.collect()`` on the GUI thread when a layer goes; with torch loaded that scan
    of every live object took ~0.5 s (``benchmarks/gui_pause.py``). The objects alive now are frozen
    for the removal (skipped by that scan) and unfrozen right after: nothing is leaked, the rest is
    left to Python's ordinary collections.
    """
    from . import quiet_gc

    layers = [ly for ly in layers if ly in viewer.layers]
    if not layers:
        return
    quiet_gc.hold()  # as gc.freeze(), but an outer hold (a training, a render) stays in force
    try:
        for ly in layers:
            viewer.layers.remove(ly)
    finally:
        quiet_gc.release()


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def fmt_duration(s: float) -> str:
    """A duration for people: ``45 s``, ``5 min``, ``1 h 30 min``."""
    s = float(s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


# -- a form generated from a pydantic model --------------------------------------------------------
_WORDS = {"pe": "PE", "mlp": "MLP", "lr": "learning rate", "sr": "SR", "n": "n"}


def field_label(name: str) -> str:
    """A readable label for a config field name (``mlp_width`` → ``MLP width``)."""
    words = [_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[0].upper() + text[1:]


def field_kind(field: Any) -> type:
    """The value type of a pydantic field (``int | None`` → ``int``); ``str`` when unclear."""
    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
    kind = args[0] if len(args) == 1 else str
    return kind if kind in (bool, int, float, str) else str


def field_rule(field: Any) -> str:
    """What a field accepts, in words (``"a whole number from 1 to 1024"``)."""
    kind = field_kind(field)
    if kind is bool:
        return "yes or no"
    if kind is str:
        return "text"
    bounds = {}
    for m in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds[sign] = getattr(m, attr)
    what = "a whole number" if kind is int else "a number"
    lo = next(((s, v) for s, v in bounds.items() if s in "≥>"), None)
    hi = next(((s, v) for s, v in bounds.items() if s in "≤<"), None)
    if lo and hi and lo[0] == "≥" and hi[0] == "≤":
        return f"{what} from {lo[1]:g} to {hi[1]:g}"
    parts = [f"{b[0]} {b[1]:g}" for b in (lo, hi) if b is not None]
    return f"{what} {' and '.join(parts)}".strip()


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


class ModelForm(QWidget):
    """One labelled field per field of a pydantic model, generated from the model's fields.

    Numbers and text get a line edit, yes/no fields a drop-down. The tooltip of each field is its
    description, what it accepts (type and bounds) and, once :meth:`set_placeholders` ran, the value
    used when it is left empty (e.g. the preset's, shown greyed). What is typed is parsed and
    checked by the model's own validation, so a bad value is refused with pydantic's reason.
    """

    def __init__(self, model: type[BaseModel], parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.inputs: dict[str, QLineEdit | QComboBox] = {}
        self.labels: dict[str, QLabel] = {}
        self._tips: dict[str, str] = {}
        form = form_layout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self._form = form
        for name, field in model.model_fields.items():
            w: QLineEdit | QComboBox
            if field_kind(field) is bool:
                w = QComboBox()
                w.addItems(["default", "yes", "no"])
            else:
                w = QLineEdit()
            self._tips[name] = f"{field.description or ''}\nAccepts {field_rule(field)}."
            label = QLabel(field_label(name))
            form.addRow(label, w)
            self.inputs[name] = w
            self.labels[name] = label
            self._set_tip(name, self._tips[name])

    def _set_tip(self, name: str, tip: str) -> None:
        self.inputs[name].setToolTip(tip)
        self.labels[name].setToolTip(tip)

    def set_placeholders(self, values: dict[str, Any], source: str = "preset") -> None:
        """Show ``values`` (e.g. a preset's) greyed in the empty fields, and in the tooltips."""
        for name, w in self.inputs.items():
            if name not in values:
                continue
            text = _fmt(values[name])
            if isinstance(w, QComboBox):
                w.setItemText(0, f"{source}: {text}")
            else:
                w.setPlaceholderText(text)
            self._set_tip(name, f"{self._tips[name]}\nEmpty: the {source}'s value ({text}).")

    def set_unused(self, names: Any, why: str) -> None:
        """Hide (and disable) the fields in ``names``, saying ``why`` in their tooltip; show the others.

        Only the fields the chosen engine reads are on screen; a hidden field keeps what was typed.
        """
        names = set(names)
        for name, w in self.inputs.items():
            unused = name in names
            w.setEnabled(not unused)
            self.labels[name].setEnabled(not unused)
            self._form.setRowVisible(w, not unused)
            tip = w.toolTip().split("\nNot used")[0]
            self._set_tip(name, f"{tip}\nNot used {why}." if unused else tip)

    def values(self) -> dict[str, Any]:
        """The fields that were filled in, as typed (validation parses them)."""
        out: dict[str, Any] = {}
        for n, w in self.inputs.items():
            if isinstance(w, QComboBox):
                if w.currentIndex() > 0:
                    out[n] = w.currentIndex() == 1
            elif w.text().strip():
                out[n] = w.text().strip()
        return out

    def set_value(self, name: str, value: Any) -> None:
        """Fill in a field (``None`` empties it: the default applies)."""
        w = self.inputs[name]
        if isinstance(w, QComboBox):
            w.setCurrentIndex(0 if value is None else (1 if value else 2))
        else:
            w.setText("" if value is None else _fmt(value))

    def connect_changed(self, slot: Any) -> None:
        for w in self.inputs.values():
            if isinstance(w, QComboBox):
                w.currentIndexChanged.connect(slot)
            else:
                w.textChanged.connect(slot)


def form_layout(parent: QWidget | None = None) -> QFormLayout:
    """A form whose fields go under their labels when the dock is too narrow for both side by side.

    Fields grow to the dock's width; nothing in a form has a fixed width, so a narrow dock wraps
    rows instead of clipping them.
    """
    form = QFormLayout(parent) if parent is not None else QFormLayout()
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


def relax_widths(widget: QWidget) -> None:
    """Let the drop-downs of ``widget`` be narrower than their longest entry (elided, not clipped).

    By default a combo box is as wide as its longest item (a layer name, a model folder), which
    would make the whole dock wider than its column.
    """
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)


def breakable(text: str) -> str:
    """``text`` with line-break opportunities after ``/ \\ _ . -`` (long paths wrap in a label)."""
    return re.sub(r"([/\\_.-])(?=\w)", "\\1\u200b", text)


def scroll_layout(widget: QWidget) -> QVBoxLayout:
    """Give ``widget`` a scroll area and return the layout inside it.

    napari's dock areas do not scroll: a tall widget would be squeezed until its rows overlap.
    """
    inner = QWidget()
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    widget._scroll_area = area  # type: ignore[attr-defined]
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return QVBoxLayout(inner)


def fit_width(widget: QWidget) -> None:
    """Keep a :func:`scroll_layout` widget at least as wide as its contents (no clipped fields)."""
    area = widget._scroll_area  # type: ignore[attr-defined]
    bar = area.verticalScrollBar().sizeHint().width()
    widget.setMinimumWidth(area.widget().minimumSizeHint().width() + bar + 4)


def save_job_script_file(
    parent: QWidget, text: str, suggested: Path, path: str | Path | None
) -> Path | None:
    """Write the SLURM script ``text`` to ``path``, or where a save dialog (opened at ``suggested``)
    says; None when the dialog is cancelled. A given ``path`` that exists is refused (raises
    :class:`SpatimeINRError`); the dialog itself asks before replacing a file."""
    from qtpy.QtWidgets import QFileDialog

    from ..workflows.jobs import write_job_script

    overwrite = False
    if path is None:
        chosen, _ = QFileDialog.getSaveFileName(
            parent, "Save SLURM job script", str(suggested), "SLURM script (*.sbatch *.sh)"
        )
        if not chosen:
            return None
        path, overwrite = chosen, True  # the dialog asked before replacing a file
    return write_job_script(path, text, overwrite=overwrite)


def job_saved_message(written: Path) -> str:
    """The status line after a job script was saved: where, and how to submit it."""
    import shlex

    return breakable(
        f"Job script saved: {written}. Submit it with: sbatch {shlex.quote(str(written))}"
    )
