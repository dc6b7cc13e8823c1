"""Names shared by the parts of the Render & Export widget (:mod:`.render` and its mixins)."""

from __future__ import annotations

from typing import Any

from ..core.errors import SpatimeINRError

MOTION_TIP = (
    "Add the motion the model recovered as arrows (a Vectors layer) for the frame in view: the "
    "velocity to the next frame, on a grid of points where the frame has signal, at the input's "
    "physical scale; arrow length proportional to speed, colour = speed in µm/s. It follows the "
    "time slider. Models of the fast SpatimeINR engine only (spatimeinr motion MODEL -o FILE "
    "exports the whole field)."
)


ROI_WHOLE = "whole volume"


ROI_VIEW = "current view (y, x)"


def identity(layer: Any) -> int:
    """The identity of a layer, also through napari's proxy (a plugin's viewer hands out proxies
    of its layers: two proxies of one layer are different objects)."""
    return id(getattr(layer, "__wrapped__", layer))


APPLY_OWN = "the model's own stack"


#: metadata key of the hidden layers that pad the side-by-side panels (see RenderWidget.set_grid)
GRID_SPACER = "spatimeinr_grid_spacer"


class Pending(SpatimeINRError):
    """The chosen layer is still being prepared for the model."""
