"""Heavy work of the widgets in other processes, so napari's GUI thread never waits for the GIL.

A worker *thread* is not enough to keep napari smooth: training and rendering run long stretches of
C code that holds Python's GIL (array warps, model loading), and every Qt call of the GUI thread
releases and re-acquires it, so drawing one frame can wait hundreds of milliseconds
(``benchmarks/gui_pause.py`` measured 830 ms while training and 260 ms while browsing with threads).
Here:

- :func:`iterate_in_process` runs a generator (training: :func:`train_in_process`; the QC check;
  an export: :func:`export_steps`, :func:`export_outputs_steps`) in a child process and yields its items back (a superqt worker
  thread iterates it; Stop/Cancel is passed through);
- :func:`compute` computes dask arrays (render chunks, previews) in a long-lived child process that
  keeps its loaded renderers (cached per model file, so a new checkpoint is picked up).

Both fall back to the calling thread where a process cannot be used (an array that cannot be
pickled, e.g. built from a local function in a test).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import dask
import numpy as np

from ..core.errors import SpatimeINRError

#: niceness added to the training and render processes (the GUI keeps its priority)
BACKGROUND_NICE = 10
_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _spawn() -> Any:
    # spawn, not fork: the GUI process has Qt and torch threads that a fork would copy half-way
    return mp.get_context("spawn")


def process_pool() -> ProcessPoolExecutor:
    """The session's render process (started on first use, kept while napari runs)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(
                max_workers=1, mp_context=_spawn(), initializer=_lower_priority
            )
        return _POOL


def _lower_priority() -> None:
    """Background work yields the CPU to napari's drawing (on a laptop every core is shared).

    It runs niced, and its torch uses one core fewer than the machine has: napari draws its canvas
    on the CPU where there is no GPU driver (software OpenGL), and a torch thread on every core
    delays those draws by hundreds of ms.
    """
    try:
        os.nice(BACKGROUND_NICE)
    except (AttributeError, OSError):  # pragma: no cover - Windows, or not permitted
        pass
    try:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    except Exception:  # pragma: no cover - torch missing: nothing to limit
        pass


def warm_up() -> None:
    """Start the render process now (its imports take seconds), without waiting for it."""
    process_pool().submit(_ready)


def _ready() -> bool:
    from .. import api  # noqa: F401  (the imports a render needs)

    return True


def _compute_here(parts: list[Any]) -> list[np.ndarray]:
    return [np.asarray(v) for v in dask.compute(*parts, scheduler="threads")]


def _compute_pickled(payload: bytes) -> list[np.ndarray]:
    return _compute_here(pickle.loads(payload))


def compute(parts: list[Any], fallback: Callable[[list[Any]], list[np.ndarray]] | None = None):
    """``dask.compute(*parts)`` in the render process, as numpy arrays.

    ``fallback`` (default: compute here) is used when ``parts`` cannot be sent to the process.
    """
    global _POOL
    # Only the tasks these parts need: a block of a lazy layer otherwise carries the whole
    # layer's graph (3 MB for a tz_yeast t×2 layer), and pickling that holds the GIL, so the
    # GUI thread, for 70-90 ms per slice (1 ms culled).
    parts = list(dask.optimize(*parts))
    try:
        payload = pickle.dumps(parts)
    except Exception:  # local functions, locks...: not for another process
        return (fallback or _compute_here)(parts)
    try:
        return process_pool().submit(_compute_pickled, payload).result()
    except BrokenProcessPool:  # the process died (e.g. out of memory): a new one next time
        with _POOL_LOCK:
            _POOL = None
        raise SpatimeINRError(
            "The render process stopped unexpectedly (out of memory?): try a smaller region "
            "or factor."
        ) from None


# -- generators: training, hold-out checks ----------------------------------------------------------
def _iterate_child(out_q: Any, stop_evt: Any, fn: Any, args: tuple, kwargs: dict) -> None:
    _lower_priority()
    try:
        for item in fn(*args, stop=stop_evt.is_set, **kwargs):
            out_q.put(("item", item))
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the GUI
        try:
            pickle.dumps(err)
        except Exception:
            err = SpatimeINRError(f"{type(err).__name__}: {err}")
        out_q.put(("error", err))
        return
    out_q.put(("done", None))


def iterate_in_process(
    fn: Callable[..., Iterator[Any]], *args: Any, stop: Callable[[], bool], **kwargs: Any
):
    """``fn(*args, stop=..., **kwargs)``, a generator, run in a child process; yields its items.

    ``stop()`` is polled ten times a second and passed on as the child's ``stop``. A ``fn`` that
    cannot be sent to a process (a local function, e.g. a test's stand-in) runs here instead.
    """
    try:
        pickle.dumps(fn)
    except Exception:
        yield from fn(*args, stop=stop, **kwargs)
        return
    ctx = _spawn()
    out_q = ctx.Queue()
    stop_evt = ctx.Event()
    child = ctx.Process(
        target=_iterate_child,
        args=(out_q, stop_evt, fn, args, kwargs),
        name=f"spatimeinr-{getattr(fn, '__name__', 'job')}",
        daemon=True,
    )
    child.start()
    try:
        while True:
            if stop():
                stop_evt.set()
            try:
                kind, item = out_q.get(timeout=0.1)
            except queue.Empty:
                if not child.is_alive():
                    raise SpatimeINRError(
                        f"The background process ended unexpectedly (exit code {child.exitcode}; "
                        "out of memory?)."
                    ) from None
                continue
            if kind == "item":
                yield item
            elif kind == "error":
                raise item
            else:
                break
    finally:
        if child.is_alive():
            stop_evt.set()
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
        out_q.close()


def train_in_process(
    source: Any, out_dir: Any, config: Any, stop: Callable[[], bool], init_from: Any = None
) -> Iterator[Any]:
    """:func:`napari_spatimeinr.api.train` in a child process; yields its progress records.

    The child finishes its current step when ``stop()`` turns true and saves a usable model, as in
    this process. ``init_from``: a model folder to start from (a warm start).
    """
    from .. import api

    kwargs = {"init_from": init_from} if init_from else {}
    yield from iterate_in_process(api.train, source, out_dir, config, stop=stop, **kwargs)


def export_steps(
    darr: Any, path: Any, meta: Any, *, dtype: str, overwrite: bool, stop: Callable[[], bool]
) -> Iterator[tuple[Any, ...]]:
    """:func:`napari_spatimeinr.api.export` as a generator (for :func:`iterate_in_process`).

    Yields ``("progress", done, total)`` as chunks are written, then ``("done", path)``; ``stop``
    cancels (the export raises :class:`~napari_spatimeinr.core.errors.StopRequested`).
    """
    from .. import api

    events: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["path"] = api.export(
                darr,
                path,
                meta,
                dtype=dtype,
                overwrite=overwrite,
                progress=lambda done, total: events.put((int(done), int(total))),
                cancel=stop,
            )
        except BaseException as err:  # noqa: BLE001 - raised below, in the generator
            result["error"] = err
        finally:
            events.put(None)

    writer = threading.Thread(target=run, name="spatimeinr-export")
    writer.start()
    while (item := events.get()) is not None:
        yield ("progress", *item)
    writer.join()
    if "error" in result:
        raise result["error"]
    yield ("done", result["path"])


def export_outputs_steps(
    outputs: Any, overwrite: Any, *, dtype: str, stop: Callable[[], bool]
) -> Iterator[tuple[Any, ...]]:
    """The files of a render export one after the other (for :func:`iterate_in_process`, one
    child process for all): ``outputs`` are :class:`~napari_spatimeinr.render.lazy.RenderOutput`
    (:func:`napari_spatimeinr.api.render_outputs`), ``overwrite`` one flag per file.

    Yields ``("progress", i, done, total)`` while file ``i`` is written and ``("written", i,
    path)`` when it is complete; ``stop`` cancels the file being written (no partial file; the
    files already complete stay).
    """
    for i, (out, replace) in enumerate(zip(outputs, overwrite, strict=True)):
        for kind, *rest in export_steps(
            out.array, out.path, out.meta, dtype=dtype, overwrite=replace, stop=stop
        ):
            yield (kind if kind == "progress" else "written", i, *rest)
