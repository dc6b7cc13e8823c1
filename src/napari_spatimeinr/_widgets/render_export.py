"""Render & Export: the export (a child process with progress and Cancel), its measured time, and the same export as a command line or a SLURM job."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QFileDialog,
    QMessageBox,
)
from superqt.utils import create_worker

from .. import api
from .._layers import browse_plan
from ..core.errors import SpatimeINRError, StopRequested
from ..core.text import fmt_bytes
from ..io.formats import SUPPORTED_WRITE_SUFFIXES, suffix_of
from ..render.lazy import uncertainty_path
from .forms import (
    fmt_seconds,
    layer_source,
)
from .processes import export_outputs_steps, iterate_in_process

if TYPE_CHECKING:
    pass


class ExportActions:
    """Mixin of :class:`~.render.RenderWidget`: Export…, its estimate from timed chunks, Copy command and Save job script…."""

    def measured_speed(self, model_dir: str | Path) -> tuple[float | None, bool]:
        """(voxels per second, True) of a warm chunk of the current plan of ``model_dir``, as
        measured by :meth:`_probe`; (None, False) before."""
        path = str(Path(model_dir).resolve())
        rates = [r for key, r in self._probes.items() if key.startswith(repr(path))]
        try:
            key = self._plan_key(self.plan())
        except SpatimeINRError:
            key = ""
        rate = self._probes.get(key) or (max(rates) if rates else None)
        return rate, rate is not None

    # -- the export time, measured ------------------------------------------------------------
    @staticmethod
    def _plan_key(plan: Any) -> str:
        p = plan.meta.provenance
        return repr(
            (
                str(Path(plan.model_dir).resolve()),
                tuple(plan.shape),
                p.get("factors"),
                p.get("t_range"),
                p.get("roi"),
                bool(plan.keep_measured),
            )
        )

    def export_estimate(self, plan: Any, files: int = 1, measure: bool = True) -> float | None:
        """Seconds an export of ``plan`` (``files`` files) takes here, from measurements: the
        start of a child process (:data:`.processes.STARTUP_S`), loading the model in it (the
        first chunk's extra time in a fresh renderer) and the chunks at the speed of a warm chunk
        of this plan timed in the render process (:meth:`_probe`). None until measured (the
        measurement is started, unless ``measure`` is False: a plan the limits refuse)."""
        from . import processes

        key = self._plan_key(plan)
        rate = self._probes.get(key)
        if rate is None:
            if measure and key not in self._probe_errors:
                self._want_probe(key, plan)
            return None
        cold = self._cold.get(str(Path(plan.model_dir).resolve()), 0.0)
        return (processes.STARTUP_S or 0.0) + cold + files * math.prod(plan.shape) / rate

    def _want_probe(self, key: str, plan: Any) -> None:
        if self._probe_wanted is None or self._probe_wanted[0] != key:
            self._probe_wanted = (key, plan)
            self._probe_timer.start()

    def _start_probe(self) -> None:
        """Time two export chunks of the wanted plan in the render process (off the GUI thread):
        the first in a fresh renderer the first time a model is measured (its load), the second
        warm (the speed)."""
        if self._probe_worker is not None or self._probe_wanted is None:
            return
        key, plan = self._probe_wanted
        path = str(Path(plan.model_dir).resolve())
        cold = path not in self._cold

        def run() -> tuple[str, str, bool, list[tuple[float, int]]]:
            from ..render.lazy import check_uncertainty
            from .processes import time_blocks

            try:  # the lazy layers' graphs, ready for Add layer (off the GUI thread)
                browsed = browse_plan(plan)
                pre: dict[str, Any] = {"render": api.render_plan(browsed)}
                try:
                    check_uncertainty(api.open_model(plan.model_dir))
                    pre["uncertainty"] = api.render_plan(browsed, uncertainty=True)
                    # its layer's settings read the calibration through a module that imports
                    # scipy.optimize (~250 ms): imported here, not on the GUI thread at Add layer
                    from ..engines.fast import uncertainty as _uncertainty  # noqa: F401
                except SpatimeINRError:
                    pass
                self._prebuilt = {key: pre}  # only the latest plan's (replaced, not grown)
            except SpatimeINRError:  # a plan too large to browse: Add layer says why
                pass
            darr = api.render_plan(plan)
            nb = darr.numblocks
            mid = nb[0] // 2  # new instants, in the middle of the movie
            other = mid + 1 if mid + 1 < nb[0] else max(mid - 1, 0)
            first = darr.blocks[(mid,) + (0,) * (darr.ndim - 1)]
            second = darr.blocks[(other,) + (0,) * (darr.ndim - 1)]
            return key, path, cold, time_blocks([first, second], cold_model=path if cold else None)

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_probed)
        worker.errored.connect(lambda _err: self._probe_errors.add(key))
        worker.finished.connect(self._probe_finished)
        self._probe_worker = worker
        worker.start()

    def _on_probed(self, result: tuple[str, str, bool, list[tuple[float, int]]]) -> None:
        key, path, cold, [(s1, v1), (s2, v2)] = result
        self._probes[key] = v2 / max(s2, 1e-6)
        if cold:
            self._cold[path] = max(s1 - s2 * v1 / max(v2, 1), 0.0)
        if self._probe_wanted is not None and self._probe_wanted[0] == key:
            self._probe_wanted = None
        self.update_info()
        self.estimate_ready.emit()

    def _probe_finished(self) -> None:
        self._probe_worker = None
        if self._probe_wanted is not None:  # the plan changed meanwhile (or the probe failed)
            key = self._probe_wanted[0]
            if key not in self._probes and key not in self._probe_errors:
                self._probe_timer.start()

    # -- the same export elsewhere: a command line, a batch job -----------------------------------------
    def export_path(self) -> Path:
        """The file Export writes (``.tif`` added when the name has no ending)."""
        text = self.path_edit.text().strip()
        if not text:
            raise SpatimeINRError("Choose a file to export to (e.g. result.tif).")
        path = Path(text).expanduser()
        if not path.suffix:
            path = path.with_name(path.name + ".tif")
        if suffix_of(path) not in SUPPORTED_WRITE_SUFFIXES:
            raise SpatimeINRError(
                f"{path.name}: unknown file type. End the name with .tif, .ome.tif, .nii.gz or .zarr."
            )
        return path

    def command_argv(self) -> list[str]:
        """The ``spatimeinr render`` argv of the current export settings."""
        from ..workflows.jobs import render_argv

        md = self._model_or_fail()
        self.plan()  # refuses what Export would refuse before the render starts
        layer = self.apply_layer()
        unc = self.uncertainty_export_path()
        if layer is None:
            return render_argv(
                md.path, self.export_path(), self.render_settings(md), uncertainty=unc
            )
        source = layer_source(layer)  # the model applied to a layer: render MODEL --input FILE
        if not source:
            raise SpatimeINRError(
                f"The layer {layer.name!r} has no file: save it (File → Save Selected Layers) and "
                "open it again to put it in a command."
            )
        argv = render_argv(
            self.model().path, self.export_path(), self.render_settings(md), uncertainty=unc
        )
        return [*argv, "--input", str(Path(source).resolve())]

    def job_script(self) -> str:
        """The SLURM batch script of the current export (see :func:`..jobs.slurm_script`)."""
        from ..limits import renderer_bytes
        from ..workflows.jobs import render_resources, slurm_script

        md = self._model_or_fail()
        argv = self.command_argv()
        resources = render_resources(
            md.shape,
            self.render_settings(md),
            model_bytes=renderer_bytes(md.shape),
            voxels_per_second=self.measured_speed(md.path)[0],
            train_device=md.config.device,
            output=self.export_path(),
            uncertainty=self.exports_uncertainty(),
        )
        return slurm_script(argv, resources, job_name=f"spatimeinr-render-{md.name}")

    def job_script_suggestion(self) -> Path:
        """Where "Save job script…" proposes to write (beside the export)."""
        out = self.export_path()
        return out.with_name(f"{out.name.split('.')[0]}.render.sbatch")

    # -- export -----------------------------------------------------------------------------------
    def _browse_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export render", self.path_edit.text(), EXPORT_FILTER
        )
        if path:
            self.path_edit.setText(path)

    def _ask_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "Overwrite?",
            f"{path} exists. Replace it (once the new file is complete)?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def export(self) -> bool:
        """Start exporting the render to the chosen file; returns False if it did not start."""
        if self.export_worker is not None:
            return False
        text = self.path_edit.text().strip()
        if not text:
            self._fail("Choose a file to export to (e.g. result.tif).")
            return False
        path = Path(text).expanduser()
        if not path.suffix:  # ImageJ TIFF by default
            path = path.with_name(path.name + ".tif")
            self.path_edit.setText(str(path))
        if suffix_of(path) not in SUPPORTED_WRITE_SUFFIXES:
            self._fail(
                f"{path.name}: unknown file type. End the name with .tif, .ome.tif, .nii.gz or .zarr."
            )
            return False
        try:
            plan = self.plan()
        except SpatimeINRError as err:
            self._fail(str(err))
            return False
        refused = self.refusals(plan, probe=True)[1]
        if refused:
            self._fail(refused)
            return False
        # the files the CLI's "render -o PATH [--uncertainty FILE]" writes, from the same code
        outputs = api.render_outputs(
            plan, path, uncertainty_path(path) if self.exports_uncertainty() else None
        )
        overwrite = []
        for out in outputs:  # every existing file is asked about before any work
            if out.path.exists() and not self.confirm_overwrite(out.path):
                self.status.setText(f"Export not started: {out.path.name} exists.")
                return False
            overwrite.append(out.path.exists())
        dtype = self.dtype_combo.currentText()
        self._export_t0 = time.perf_counter()
        self._cancel = False
        self.error_label.setText("")
        self.export_bar.setRange(0, 0)  # busy until the first chunk
        self._export_targets = [out.path for out in outputs]
        self._export_written = []
        written = self._export_written
        n = len(outputs)

        def run() -> Path:
            # in a child process: rendering holds the GIL for long stretches (napari would stall)
            for kind, i, *rest in iterate_in_process(
                export_outputs_steps,
                outputs,
                overwrite,
                dtype=dtype,
                stop=lambda: self._cancel,
            ):
                if kind == "progress":  # one bar for all files (they have the same chunks)
                    done, total = rest
                    self.export_progress.emit(i * total + done, n * total)
                else:
                    written.append(Path(rest[0]))
            if len(written) < n:
                raise SpatimeINRError("The export ended without writing the file.")
            return written[0]

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        self._export_plan = plan
        worker.returned.connect(self._on_exported)
        worker.errored.connect(self._on_export_error)
        worker.finished.connect(self._on_export_finished)
        self.export_worker = worker
        self.export_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(f"Exporting to {' and '.join(out.path.name for out in outputs)}…")
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop the export after the current chunk; the partial output is removed."""
        self._cancel = True
        self.cancel_btn.setEnabled(False)
        self.status.setText("Cancelling…")

    def _on_export_progress(self, done: int, total: int) -> None:
        self.export_bar.setRange(0, max(1, total))
        self.export_bar.setValue(done)
        if 0 < done < total and not self._cancel:
            elapsed = time.perf_counter() - self._export_t0
            left = elapsed / done * (total - done)
            self.status.setText(
                f"Exporting: part {done} of {total} written, {fmt_seconds(elapsed)} elapsed, "
                f"about {fmt_seconds(left)} left."
            )

    def _on_exported(self, path: Path) -> None:
        written = list(self._export_written) or [Path(path)]
        self.last_export = Path(path)
        self.last_uncertainty_export = written[1] if len(written) > 1 else None
        self.last_export_seconds = time.perf_counter() - self._export_t0
        self.status.setText(
            "Exported " + " and ".join(f"{p.name} ({fmt_bytes(_size(p))})" for p in written) + "."
        )
        self.export_bar.setRange(0, 1)
        self.export_bar.setValue(1)
        self.export_done.emit(str(path))

    def _on_export_error(self, err: BaseException) -> None:
        self.export_bar.setRange(0, 1)
        self.export_bar.setValue(0)
        kept = [p.name for p in self._export_written]  # complete files stay (the render)
        left = [p.name for p in self._export_targets if p.name not in kept]
        if isinstance(err, StopRequested):
            if kept:
                self.status.setText(
                    f"Export cancelled: {' and '.join(left)} was not written "
                    f"({' and '.join(kept)} was)."
                )
            else:
                self.status.setText("Export cancelled: no file was written.")
        else:
            text = str(err) if isinstance(err, SpatimeINRError) else f"{type(err).__name__}: {err}"
            done = f" ({' and '.join(kept)} was written)" if kept else ""
            self._fail(f"Export failed: {text}{done}")
        self.export_done.emit("")

    def _on_export_finished(self) -> None:
        self.export_worker = None
        self.cancel_btn.setEnabled(False)
        self.update_info()


EXPORT_FILTER = (
    "ImageJ TIFF (*.tif *.tiff);;OME-TIFF (*.ome.tif *.ome.tiff);;NIfTI (*.nii.gz *.nii);;"
    "OME-Zarr (*.zarr *.ome.zarr)"
)


def _size(path: Path) -> float:
    """Bytes of a written output: a file, or the files of a folder (OME-Zarr)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
