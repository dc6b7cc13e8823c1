"""What the Train and Render & Export widgets share: "Copy command", "Save job script…" and how
an error is shown (the widget's error line and a napari notification)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QApplication

from ..core.errors import SpatimeINRError
from .forms import breakable, job_saved_message, save_job_script_file


def show_error(label: Any, text: str) -> None:
    """``text`` in ``label`` (a QLabel, or None) and as a napari notification (best effort)."""
    if label is not None:
        label.setText(text)
    try:
        from napari.utils.notifications import show_error as notify

        notify(text)
    except Exception:  # pragma: no cover - notifications are a nicety
        pass


class CommandActions:
    """Mixin of a dock widget that can say its settings as a ``spatimeinr`` command and a SLURM job.

    The widget provides :meth:`command_argv`, :meth:`job_script`, :meth:`job_script_suggestion`
    and the ``error_label`` and ``status`` labels.
    """

    error_label: Any
    status: Any

    def copy_command(self) -> str:
        """Copy the command line of the current settings to the clipboard; returns it ("" when
        the settings cannot be written as a command: the reason is shown)."""
        from ..workflows.jobs import command_line

        try:
            line = command_line(self.command_argv())
        except SpatimeINRError as err:
            self._fail(str(err))
            return ""
        QApplication.clipboard().setText(line)
        self.error_label.setText("")
        self.status.setText(breakable(f"Copied to the clipboard: {line}"))
        return line

    def save_job_script(self, path: str | Path | None = None) -> Path | None:
        """Write :meth:`job_script` to ``path`` (asked with a file dialog when None, which
        confirms a replacement; a given path that exists is refused). Returns the file written."""
        try:
            written = save_job_script_file(
                self,  # type: ignore[arg-type]
                self.job_script(),
                self.job_script_suggestion(),
                path,
            )
        except SpatimeINRError as err:
            self._fail(str(err))
            return None
        if written is None:
            return None
        self.error_label.setText("")
        self.status.setText(job_saved_message(written))
        return written

    def _fail(self, text: str) -> None:
        show_error(self.error_label, text)
