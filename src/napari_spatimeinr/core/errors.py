"""User-facing errors: one clear message that names the problem and the fix."""

from __future__ import annotations


class SpatimeINRError(ValueError):
    """Bad input or an impossible request. The message is shown to the user as is.

    Front ends print ``str(err)`` (CLI: one line on stderr, exit code 2; GUI: a notification).
    """


class StopRequested(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside long work when the user asked it to stop."""


class LimitError(SpatimeINRError):
    """A request refused by :mod:`napari_spatimeinr.limits` before any work: too large for the
    disk, the memory or the format. The message names the number and the limit."""
