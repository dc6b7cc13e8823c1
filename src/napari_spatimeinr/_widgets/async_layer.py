"""Lazy layers that never block the GUI: chunks are computed in a worker thread and cached.

Why: napari 0.9 slices a dask-backed layer on the GUI thread when a slider moves (its async slicing
is experimental and off by default), so a slow render freezes the window. :class:`AsyncArray`
stands in for the dask array as the layer's data. napari's slicer asks it for ``data[t, z]`` (2D
view) or ``data[t]`` (3D view):

- the chunks (dask blocks) covering that slice are looked up in an LRU cache of computed chunks;
  when all are there the slice is assembled from them at once (no dask, no waiting);
- otherwise a blank slice of the right shape is returned at once, and the missing chunks are
  computed in a superqt worker thread. Requests are debounced (30 ms) and only the latest is
  computed: slices skipped over while a slider moves are dropped (a chunk already being computed
  finishes and is kept). When the chunks are ready the layers showing the array are refreshed;
- while a slice is being computed the layer's name ends with ``(computing…)`` and
  ``busy_changed`` fires; errors go to ``failed`` (the widgets show them).

Chunks shaped like what is viewed make browsing cheap: :func:`napari_spatimeinr._layers.
browse_plan` renders one (y, x) plane per chunk, so a slider step computes one plane, and a 3D
view the planes of one frame; any plane computed once is reused by both views.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask
import dask.array as da
import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from superqt.utils import create_worker

COMPUTING = " (computing…)"
Key = tuple[Any, ...]
Block = tuple[int, ...]


def _norm_key(key: Any, ndim: int) -> Key:
    """A hashable, canonical form of an index (ints and slice triples), padded to ``ndim``."""
    if not isinstance(key, tuple):
        key = (key,)
    out: list[Any] = []
    for k in key:
        if isinstance(k, slice):
            if k.step is not None and k.step < 0:
                raise TypeError("negative steps are not supported")
            out.append(("s", k.start, k.stop, k.step))
        elif isinstance(k, int | np.integer):
            out.append(int(k))
        else:  # arrays, Ellipsis...: not cached by value
            raise TypeError(f"unsupported index {k!r}")
    if len(out) > ndim:
        raise TypeError("too many indices")
    out.extend([("s", None, None, None)] * (ndim - len(out)))
    return tuple(out)


class AsyncArray(QObject):
    """An array-like over a dask array whose ``__getitem__`` never computes on the caller's thread.

    Attributes:
        dask: the wrapped lazy array (use it to export).
        computations: how many chunks were computed (cache misses), for tests and the status.
        seconds, voxels: time spent computing chunks and voxels computed (speed estimates).
    """

    ready = Signal(object)  #: chunks (a list of block indices) were computed and cached
    busy_changed = Signal(bool)  #: a slice the layer shows is being computed (True) or ready
    failed = Signal(str)  #: computing a slice failed (the message)

    def __init__(
        self,
        darr: da.Array,
        *,
        cache_mb: float = 512.0,
        debounce_ms: int = 30,
        processes: bool = False,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.dask = darr
        #: compute in the render process (:mod:`.processes`): the GUI never waits for the GIL
        self.processes = processes
        self.cache_bytes = int(cache_mb * 1e6)
        self._bounds = [np.cumsum((0, *c)) for c in darr.chunks]
        self._cache: OrderedDict[Block, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._wanted: Key | None = None
        self._running: list[Block] | None = None
        self._worker: Any = None
        self.computations = 0
        self.seconds = 0.0
        self.voxels = 0
        self._rates: list[float] = []  # voxels per second of each computation
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)
        self._timer.timeout.connect(self._start_next)

    # -- the array protocol napari needs ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.dask.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.dask.dtype

    @property
    def ndim(self) -> int:
        return self.dask.ndim

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            nkey = _norm_key(key, self.ndim)
            blocks, local = self._locate(nkey)
        except TypeError:  # an unusual index: answer a blank of the right shape, compute nothing
            return np.zeros(self.dask[key].shape, self.dtype)
        if blocks is None:  # an empty selection
            return np.zeros(self.dask[key].shape, self.dtype)
        region = self._assemble(blocks)
        if region is not None:
            self._wanted = None  # the view is here now: nothing to compute
            self.busy_changed.emit(False)
            return region[local]
        self.request(nkey)
        return np.zeros(self._result_shape(nkey), self.dtype)  # no dask work on the GUI thread

    def _result_shape(self, key: Key) -> tuple[int, ...]:
        return tuple(
            len(range(*slice(*k[1:]).indices(n)))
            for k, n in zip(key, self.shape, strict=True)
            if not isinstance(k, int)
        )

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "This layer is rendered on demand: export it from the Render & Export widget "
            "instead of converting it to one array."
        )

    # -- chunks ------------------------------------------------------------------------------------
    def _locate(self, key: Key) -> tuple[list[range] | None, tuple[Any, ...]]:
        """Block ranges per axis covering ``key``, and the index into the region they span."""
        ranges: list[range] = []
        local: list[Any] = []
        for k, n, b in zip(key, self.shape, self._bounds, strict=True):
            if isinstance(k, int):
                i = k + n if k < 0 else k
                if not 0 <= i < n:
                    raise TypeError("index out of range")
                j = int(np.searchsorted(b, i, side="right")) - 1
                ranges.append(range(j, j + 1))
                local.append(i - int(b[j]))
                continue
            start, stop, step = slice(*k[1:]).indices(n)
            if len(range(start, stop, step)) == 0:
                return None, ()
            last = range(start, stop, step)[-1]
            j0 = int(np.searchsorted(b, start, side="right")) - 1
            j1 = int(np.searchsorted(b, last, side="right")) - 1
            ranges.append(range(j0, j1 + 1))
            base = int(b[j0])
            local.append(slice(start - base, last - base + 1, step))
        return ranges, tuple(local)

    def _missing(self, key: Key) -> list[Block]:
        ranges, _ = self._locate(key)
        if ranges is None:
            return []
        with self._lock:
            return [blk for blk in itertools.product(*ranges) if blk not in self._cache]

    def _assemble(self, ranges: list[range]) -> np.ndarray | None:
        """The region covered by the blocks in ``ranges`` from the cache, or None if any is missing."""
        blocks = list(itertools.product(*ranges))
        with self._lock:
            parts = [self._cache.get(blk) for blk in blocks]
            if any(p is None for p in parts):
                return None
            for blk in blocks:
                self._cache.move_to_end(blk)
        if len(parts) == 1:
            return parts[0]
        starts = [int(b[r[0]]) for b, r in zip(self._bounds, ranges, strict=True)]
        shape = [
            int(b[r[-1] + 1]) - s for b, r, s in zip(self._bounds, ranges, starts, strict=True)
        ]
        out = np.empty(shape, self.dtype)
        for blk, part in zip(blocks, parts, strict=True):
            lo = [int(b[j]) - s for b, j, s in zip(self._bounds, blk, starts, strict=True)]
            out[tuple(slice(a, a + m) for a, m in zip(lo, part.shape, strict=True))] = part
        return out

    def _store(self, block: Block, value: np.ndarray) -> None:
        with self._lock:
            self._cache[block] = value
            total = sum(v.nbytes for v in self._cache.values())
            while total > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                total -= old.nbytes

    def cached_blocks(self) -> int:
        """How many chunks are cached now."""
        with self._lock:
            return len(self._cache)

    # -- the worker --------------------------------------------------------------------------------
    def request(self, key: Key) -> None:
        """Ask for ``key`` to be computed (debounced; it replaces any earlier pending request)."""
        self._wanted = key
        self.busy_changed.emit(True)
        self._timer.start()

    def _start_next(self) -> None:
        key = self._wanted
        if key is None or self._running is not None:
            return
        missing = self._missing(key)
        if not missing:
            self._wanted = None
            self.busy_changed.emit(False)
            self.ready.emit([])
            return
        self._running = missing
        parts = [self.dask.blocks[blk] for blk in missing]

        def here(parts: list[Any]) -> list[np.ndarray]:
            values = dask.compute(*parts, scheduler="threads", pool=_pool())
            return [np.asarray(v) for v in values]

        def compute() -> tuple[list[np.ndarray], float]:
            t0 = time.perf_counter()
            if self.processes:
                from .processes import compute as in_process

                values = in_process(parts, fallback=here)
            else:
                values = here(parts)
            return values, time.perf_counter() - t0

        worker = create_worker(compute, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda result, b=missing: self._done(b, *result))
        worker.errored.connect(self._error)
        self._worker = worker
        worker.start()

    def _done(self, blocks: list[Block], values: list[np.ndarray], seconds: float) -> None:
        voxels = sum(int(v.size) for v in values)
        for blk, value in zip(blocks, values, strict=True):
            self._store(blk, value)
        self.computations += len(blocks)
        self.seconds += seconds
        self.voxels += voxels
        if seconds > 0:
            self._rates.append(voxels / seconds)
        self._running = None
        self._worker = None
        self.ready.emit(blocks)  # the layers re-slice: a satisfied view clears the busy state
        if self._wanted is not None and self._missing(self._wanted):
            self._timer.start()  # the view moved on while these computed: compute the latest

    def _error(self, err: BaseException) -> None:
        self._running = None
        self._worker = None
        self._wanted = None
        self.busy_changed.emit(False)
        self.failed.emit(str(err) or type(err).__name__)

    @property
    def speed(self) -> float | None:
        """Typical voxels per second (median over computations; None before two of them).

        The first computations of a process also load the model and start the threads: the
        median keeps such one-off costs out of the estimate.
        """
        if len(self._rates) < 2:
            return None
        return float(np.median(self._rates))

    @property
    def busy(self) -> bool:
        return self._running is not None or (
            self._wanted is not None and bool(self._missing(self._wanted))
        )

    def wait_idle(self) -> None:
        """Block until the running worker (if any) ends (for closing and tests)."""
        from superqt.utils import WorkerBase

        self._timer.stop()
        self._wanted = None
        WorkerBase.await_workers()


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The threads computing lazy layers: kept for the whole session.

    dask's default pool belongs to the calling thread, and Qt's worker threads come and go, so
    each new worker would start new threads, and torch pays a one-off start-up in each new
    thread (about 0.5 s measured on a CPU).
    """
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="lazy")
    return _POOL


def _layers_holding(arr: AsyncArray) -> list[Any]:
    """The napari layers (in any open viewer) whose data is ``arr``."""
    try:
        from napari.viewer import Viewer

        viewers = list(getattr(Viewer, "_instances", ()))
    except Exception:  # pragma: no cover
        viewers = []
    return [ly for v in viewers for ly in v.layers if ly.data is arr]


def connect_layer_updates(arr: AsyncArray) -> None:
    """Refresh the layers showing ``arr`` when a slice is ready; mark them "computing…" meanwhile.

    The layers are looked up when needed, so this works for layers created by napari from a reader's
    layer data as well as for :func:`add_async_layer`.
    """

    def busy(is_busy: bool) -> None:
        for layer in _layers_holding(arr):
            base = layer.name[: -len(COMPUTING)] if layer.name.endswith(COMPUTING) else layer.name
            want = base + COMPUTING if is_busy else base
            if layer.name != want:
                layer.name = want

    def ready(_key: Key) -> None:
        for layer in _layers_holding(arr):
            layer.refresh()

    arr.busy_changed.connect(busy)
    arr.ready.connect(ready)


def async_array(darr: da.Array, cache_mb: float = 512.0, processes: bool = False) -> AsyncArray:
    """An :class:`AsyncArray` over ``darr`` whose layers update themselves (reader layer data).

    ``processes``: compute the chunks in the render process (renders of a model), not in threads.
    """
    if processes:
        from .processes import warm_up

        warm_up()  # its start-up overlaps with adding the layer
    arr = AsyncArray(darr, cache_mb=cache_mb, processes=processes)
    connect_layer_updates(arr)
    return arr


def add_async_layer(
    viewer: Any,
    darr: da.Array,
    *,
    on_error: Callable[[str], None] | None = None,
    cache_mb: float = 512.0,
    processes: bool = False,
    **layer_kwargs: Any,
) -> Any:
    """Add an Image layer showing ``darr`` computed slice by slice off the GUI thread.

    ``layer_kwargs`` must include ``contrast_limits`` (never computed from the lazy data).
    Returns the layer; its ``data`` is an :class:`AsyncArray` (``layer.data.dask`` is the array).
    """
    if "contrast_limits" not in layer_kwargs:
        raise ValueError("contrast_limits are required: they are never computed from lazy data")
    arr = async_array(darr, cache_mb=cache_mb, processes=processes)
    if on_error is not None:
        arr.failed.connect(on_error)
    return viewer.add_image(arr, multiscale=False, **layer_kwargs)


def is_async_layer(layer: Any) -> bool:
    return isinstance(getattr(layer, "data", None), AsyncArray)


def layer_dask(layer: Any) -> da.Array:
    """The lazy array behind a layer (async or plain dask/numpy)."""
    data = layer.data
    if isinstance(data, AsyncArray):
        return data.dask
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
