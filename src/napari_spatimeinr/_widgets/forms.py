"""Small building blocks of the dock widgets: layer ↔ stack, typed forms from pydantic models."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .._layers import META_KEY
from ..data.stack import Stack4D
from ..errors import SpatimeINRError
from ..io.axes import check_axes, to_tzyx

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
    layer: Any, axes: str, voxel_size: tuple[float, float, float], frame_interval: float
) -> Stack4D:
    """A TZYX :class:`Stack4D` of an image layer read with ``axes`` and the given physical sizes."""
    if getattr(layer, "rgb", False):
        raise SpatimeINRError(f"{layer.name!r} is an RGB image: pick a fluorescence layer.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    axes = check_axes(axes.upper(), data.ndim)
    if "C" in axes:
        raise SpatimeINRError(
            "Training uses one channel: split the channels (right-click the layer → Split Stack) "
            "and pick one layer, or give axes without C."
        )
    meta = layer_meta(layer)
    return Stack4D(
        to_tzyx(np.asarray(data), axes),
        voxel_size=voxel_size,
        frame_interval=frame_interval,
        source_axes=axes,
        name=str(layer.name),
        source_path=layer_source(layer),
        source_sha256=str(meta.get("source_sha256", "")),
        origin=tuple(float(v) for v in meta.get("origin", (0.0, 0.0, 0.0, 0.0))),  # type: ignore[arg-type]
    ).validate()


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


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


# -- a form generated from a pydantic model --------------------------------------------------------
_WORDS = {"pe": "PE", "mlp": "MLP", "lr": "learning rate", "sr": "SR", "n": "n"}


def field_label(name: str) -> str:
    """A readable label for a config field name (``mlp_width`` → ``MLP width``)."""
    words = [_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[0].upper() + text[1:]


class ModelForm(QWidget):
    """One labelled text field per field of a pydantic model; the description is the tooltip.

    An empty field means "not set" (the model's default, e.g. the preset's value, which is shown
    greyed as a placeholder: see :meth:`set_placeholders`). What is typed is parsed and checked by
    the model's own validation, so a bad value is refused with pydantic's reason.
    """

    def __init__(self, model: type[BaseModel], parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.inputs: dict[str, QLineEdit] = {}
        self._tips: dict[str, str] = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for name, field in model.model_fields.items():
            w = QLineEdit()
            self._tips[name] = field.description or ""
            w.setToolTip(self._tips[name])
            label = QLabel(field_label(name))
            label.setToolTip(self._tips[name])
            form.addRow(label, w)
            self.inputs[name] = w
            self.labels = getattr(self, "labels", {}) | {name: label}

    def set_placeholders(self, values: dict[str, Any], source: str = "preset") -> None:
        """Show ``values`` (e.g. a preset's) greyed in the empty fields, and in the tooltips."""
        for name, w in self.inputs.items():
            if name in values:
                v = values[name]
                text = f"{v:g}" if isinstance(v, float) else str(v)
                w.setPlaceholderText(text)
                w.setToolTip(f"{self._tips[name]}\nEmpty: the {source}'s value ({text}).")
                self.labels[name].setToolTip(w.toolTip())

    def values(self) -> dict[str, Any]:
        """The fields that were filled in, as typed (validation parses them)."""
        return {n: w.text().strip() for n, w in self.inputs.items() if w.text().strip()}

    def changed(self) -> dict[str, Any]:
        return self.values()

    def set_value(self, name: str, value: Any) -> None:
        self.inputs[name].setText(f"{value:g}" if isinstance(value, float) else str(value))

    def connect_changed(self, slot: Any) -> None:
        for w in self.inputs.values():
            w.textChanged.connect(slot)


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
