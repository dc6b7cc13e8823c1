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

Every child ends with napari, even when napari is killed (SIGKILL, a crash): :func:`watch_parent`
runs first in each child. On Linux the kernel signals the child when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread polls ``os.getppid()``. The child's
``stop`` then turns true (an export cancels and removes its temporary file, a training stops), and
after :data:`PARENT_GRACE_S` the child exits regardless, removing the temporary files of the export
it was writing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import dask
import numpy as np

from ..core.errors import SpatimeINRError

#: niceness added to the training and render processes (the GUI keeps its priority)
BACKGROUND_NICE = 10
_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
#: seconds between two looks at the parent process (the portable fallback of PR_SET_PDEATHSIG)
PARENT_POLL_S = 0.5
#: seconds a child whose parent died has to stop cleanly before it exits regardless
PARENT_GRACE_S = 8.0
#: set in a child process once its parent (napari) is gone
PARENT_GONE = threading.Event()
#: files this child process is writing (their temporary siblings are removed on a forced exit)
_WRITING: list[Path] = []
_PR_SET_PDEATHSIG = 1


def _spawn() -> Any:
    # spawn, not fork: the GUI process has Qt and torch threads that a fork would copy half-way
    return mp.get_context("spawn")


#: seconds a new child process took here to start and import the renderer (None: not yet known)
STARTUP_S: float | None = None


def process_pool() -> ProcessPoolExecutor:
    """The session's render process (started on first use, kept while napari runs).

    Its start-up (spawn and imports) is timed: :data:`STARTUP_S`, what an export's own child
    process will also spend before its first chunk.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(
                max_workers=1,
                mp_context=_spawn(),
                initializer=_child_init,
                initargs=(os.getpid(), 0.0),
            )
            t0 = time.perf_counter()
            _POOL.submit(_ready).add_done_callback(lambda _f: _set_startup(t0))
        return _POOL


def _set_startup(t0: float) -> None:
    global STARTUP_S
    if STARTUP_S is None:
        STARTUP_S = time.perf_counter() - t0


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


def _child_init(parent_pid: int, grace_s: float = PARENT_GRACE_S) -> None:
    """First thing in every child: end with the parent; then yield the CPU to napari."""
    watch_parent(parent_pid, grace_s)
    _lower_priority()


def _parent_died(parent_pid: int) -> bool:
    return os.getppid() != parent_pid


def _set_pdeathsig(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent ends (False where it cannot)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return False


def watch_parent(parent_pid: int, grace_s: float = PARENT_GRACE_S) -> threading.Thread:
    """End this (child) process within seconds once ``parent_pid`` is no longer its parent.

    ``PR_SET_PDEATHSIG`` (Linux) signals the death at once; it also fires when the *thread* that
    started this process ends, so the handler only reacts when the parent really changed. A daemon
    thread polls ``os.getppid()`` every :data:`PARENT_POLL_S` (macOS, Windows, and a death before
    the prctl). On the death :data:`PARENT_GONE` is set (:func:`_iterate_child` passes it on as
    ``stop``), and after ``grace_s`` the process removes the temporary files of the exports it was
    writing and exits with status 3.
    """

    def on_signal(*_: Any) -> None:
        if _parent_died(parent_pid):
            PARENT_GONE.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR2, on_signal)
        _set_pdeathsig(signal.SIGUSR2)

    def watch() -> None:
        while not PARENT_GONE.wait(PARENT_POLL_S):
            if _parent_died(parent_pid):
                PARENT_GONE.set()
        end = time.monotonic() + grace_s
        while time.monotonic() < end and threading.main_thread().is_alive():
            time.sleep(0.05)
        for target in list(_WRITING):
            _remove_partial(target)
        os._exit(3)

    thread = threading.Thread(target=watch, name="spatimeinr-parent-watch", daemon=True)
    thread.start()
    if _parent_died(parent_pid):  # died before the watch began
        PARENT_GONE.set()
    return thread


def _remove_partial(target: Path) -> None:
    """Remove the temporary outputs of ``target`` (``.NAME.XXXXXXXX.tmp``/``.raw``, as
    :mod:`napari_spatimeinr.io.write` names them); the finished file is left alone."""
    import shutil

    for p in Path(target).parent.glob(f".{Path(target).name}.*"):
        if p.suffix in (".tmp", ".raw"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


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


def _time_blocks(payload: bytes, cold_model: str | None) -> list[tuple[float, int]]:
    """(seconds, voxels) of each part computed one after the other, in the render process;
    ``cold_model``: forget that model's loaded renderers first (the first part then pays what a
    new process pays: loading the model)."""
    if cold_model:
        from ..render.lazy import clear_renderer_cache

        clear_renderer_cache(cold_model)
    out = []
    for part in pickle.loads(payload):
        t0 = time.perf_counter()
        [value] = _compute_here([part])
        out.append((time.perf_counter() - t0, int(value.size)))
    return out


def time_blocks(parts: list[Any], cold_model: str | None = None) -> list[tuple[float, int]]:
    """Time the computation of each of ``parts`` (dask arrays) in the render process, in order:
    [(seconds, voxels)] (see :func:`_time_blocks`). Blocks the caller: call it off the GUI thread."""
    parts = list(dask.optimize(*parts))
    payload = pickle.dumps(parts)
    return process_pool().submit(_time_blocks, payload, cold_model).result()


# -- generators: training, hold-out checks ----------------------------------------------------------
def _iterate_child(
    out_q: Any, stop_evt: Any, fn: Any, args: tuple, kwargs: dict, parent_pid: int
) -> None:
    _child_init(parent_pid)
    from .. import api  # noqa: F401  (what every job needs: timed as the start-up)

    out_q.put(("started", None))

    def stop() -> bool:  # Stop/Cancel in napari, or napari gone
        return stop_evt.is_set() or PARENT_GONE.is_set()

    try:
        for item in fn(*args, stop=stop, **kwargs):
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
        args=(out_q, stop_evt, fn, args, kwargs, os.getpid()),
        name=f"spatimeinr-{getattr(fn, '__name__', 'job')}",
        daemon=True,
    )
    t0 = time.perf_counter()
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
            if kind == "started":  # the latest start-up of a process here (export estimates)
                global STARTUP_S
                STARTUP_S = time.perf_counter() - t0
            elif kind == "item":
                yield item
            elif kind == "error":
                raise item
            else:
                break
    finally:
        if child.is_alive():
            stop_evt.set()
            # its last item is in: the child's exit (torch's teardown, seconds) is not waited for
            threading.Thread(target=_reap, args=(child, out_q), daemon=True).start()
        else:
            out_q.close()


def _reap(child: Any, out_q: Any) -> None:
    """Wait for a finished child to exit (terminated after 30 s), then close its queue."""
    child.join(timeout=30)
    if child.is_alive():
        child.terminate()
        child.join(timeout=5)
    out_q.close()


def train_in_process(
    source: Any,
    out_dir: Any,
    config: Any,
    stop: Callable[[], bool],
    init_from: Any = None,
    started: float | None = None,
) -> Iterator[Any]:
    """:func:`napari_spatimeinr.api.train` in a child process; yields its progress records.

    The child finishes its current step when ``stop()`` turns true and saves a usable model, as in
    this process. ``init_from``: a model folder to start from (a warm start). ``started``: when
    the user asked for the training (``time.time()``): the time limit counts from then, so the
    seconds the child process takes to start (imports: several seconds) are part of it, as the
    CLI's limit covers its own start-up.
    """
    kwargs: dict[str, Any] = {"started": time.time() if started is None else started}
    if init_from:
        kwargs["init_from"] = init_from
    yield from iterate_in_process(_train_from, source, out_dir, config, stop=stop, **kwargs)


def _train_from(
    source: Any, out_dir: Any, config: Any, *, stop: Callable[[], bool], started: float, **kw: Any
) -> Iterator[Any]:
    """:func:`napari_spatimeinr.api.train` with the time limit shortened by the seconds since
    ``started`` (in the child process: its start-up is spent)."""
    from .. import api

    limit = getattr(config, "time_limit", None)
    if limit is not None:
        left = max(float(limit) - max(time.time() - started, 0.0), 1.0)
        config = config.model_copy(update={"time_limit": left})
    yield from api.train(source, out_dir, config, stop=stop, **kw)


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
    _WRITING.append(Path(path))
    writer.start()
    try:
        while (item := events.get()) is not None:
            yield ("progress", *item)
        writer.join()
    finally:
        _WRITING.remove(Path(path))
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
