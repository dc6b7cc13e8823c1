"""Small building blocks of the dock widgets: layer ↔ stack, typed forms from pydantic models."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
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
def _bounds(field: Any) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in field.metadata:
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
        lo = getattr(m, "gt", None) if getattr(m, "gt", None) is not None else lo
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
    return lo, hi


class ModelForm(QWidget):
    """One labelled input per field of a pydantic model: defaults filled, descriptions as tooltips.

    Integers get a bounded spin box; floats a text field (so 2e-5 stays readable) whose value is
    checked by the model's own validation (see :meth:`values`).
    """

    def __init__(self, model: type[BaseModel], parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.inputs: dict[str, QWidget] = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for name, field in model.model_fields.items():
            tip = field.description or ""
            if field.annotation is bool:
                w: QWidget = QCheckBox()
                w.setChecked(bool(field.default))
            elif field.annotation is int:
                w = QSpinBox()
                lo, hi = _bounds(field)
                w.setRange(int(lo if lo is not None else 0), int(hi if hi is not None else 10**9))
                w.setValue(int(field.default))
            elif field.annotation is float:
                w = QLineEdit(f"{field.default:g}")
            else:
                w = QLineEdit(str(field.default))
            w.setToolTip(f"{tip}\nDefault: {field.default}")
            label = QLabel(name.replace("_", " ").capitalize())
            label.setToolTip(w.toolTip())
            form.addRow(label, w)
            self.inputs[name] = w

    def raw_values(self) -> dict[str, Any]:
        """The entered values (floats parsed; unparsable text is passed on for validation)."""
        out: dict[str, Any] = {}
        for name, w in self.inputs.items():
            if isinstance(w, QSpinBox | QDoubleSpinBox):
                out[name] = w.value()
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif self.model.model_fields[name].annotation is not float:
                out[name] = w.text().strip()
            else:
                text = w.text().strip()
                try:
                    out[name] = float(text)
                except ValueError:
                    out[name] = text
        return out

    def changed(self) -> dict[str, Any]:
        """Fields whose value differs from the default."""
        defaults = {n: f.default for n, f in self.model.model_fields.items()}
        return {k: v for k, v in self.raw_values().items() if v != defaults[k]}

    def connect_changed(self, slot: Any) -> None:
        for w in self.inputs.values():
            if isinstance(w, QCheckBox):
                sig = w.toggled
            elif isinstance(w, QSpinBox | QDoubleSpinBox):
                sig = w.valueChanged
            else:
                sig = w.textChanged
            sig.connect(slot)
