"""The time under napari's T slider, in seconds, and whether it is a measured frame.

napari's dims slider counts steps; once a render with new instants is shown beside its input, a step
is a fraction of a frame. :class:`TimeReadout` writes the slider's world time (the layers' T scale is
the frame interval, so it is in seconds) and its place between the measured frames in napari's text
overlay, as the slider moves. It leaves the overlay alone when something else wrote it.
"""

from __future__ import annotations

import math
from typing import Any

#: closer than this to a measured frame (in frames) counts as the measured frame
_ON_FRAME = 1e-6


def describe_time(t: float, t0: float, interval: float, n_frames: int) -> str:
    """``t = 45.4 s · measured frame 10`` or ``t = 47.6 s · rendered, 0.50 of frame 10 → 11``."""
    k = (float(t) - float(t0)) / float(interval)
    text = f"t = {float(t):.4g} s"
    nearest = round(k)
    if abs(k - nearest) < _ON_FRAME and 0 <= nearest < n_frames:
        return f"{text} · measured frame {nearest}"
    if 0 <= k <= n_frames - 1:
        i = min(int(math.floor(k)), n_frames - 2)
        return f"{text} · rendered, {k - i:.2f} of frame {i} → {i + 1}"
    return text


class TimeReadout:
    """Keeps napari's text overlay on the time under the T slider (see the module docstring)."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self._frames: tuple[float, float, int] | None = None
        self._written: str | None = None
        self._connected = False

    def follow(self, t0: float, interval: float, n_frames: int) -> None:
        """Show the time for a model whose measured frames are at ``t0 + k · interval``."""
        if not (interval > 0 and n_frames > 1):
            return
        self._frames = (float(t0), float(interval), int(n_frames))
        if not self._connected:
            self.viewer.dims.events.point.connect(self.update)
            self._connected = True
        self.update()

    def time_axis(self) -> int | None:
        """The dims axis of time: the first of a 4D (T, Z, Y, X) view, else none."""
        return self.viewer.dims.ndim - 4 if self.viewer.dims.ndim >= 4 else None

    def update(self, *_: Any) -> None:
        overlay = self.viewer.text_overlay
        if self._frames is None or overlay.text not in ("", self._written):
            return  # someone else's text: not ours to replace
        axis = self.time_axis()
        if axis is None:
            return
        t = float(self.viewer.dims.point[axis])
        self._written = describe_time(t, *self._frames)
        overlay.text = self._written
        if not overlay.visible:
            overlay.visible = True

    def close(self) -> None:
        """Stop following; clears the overlay if the text is still ours."""
        if self._connected:
            self.viewer.dims.events.point.disconnect(self.update)
            self._connected = False
        overlay = self.viewer.text_overlay
        if self._written is not None and overlay.text == self._written:
            overlay.text = ""
            overlay.visible = False
        self._frames = self._written = None
