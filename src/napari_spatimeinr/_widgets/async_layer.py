"""Lazy layers that never block the GUI: slices are computed in a worker thread and cached.

napari 0.9 computes a dask layer's slice on the GUI thread when a slider moves, so a slow render
freezes the window. :class:`AsyncArray` stands in for the dask array as the layer's data: napari's
slicer asks it for ``data[t, z]`` (2D view) or ``data[t]`` (3D view); a slice already computed comes
from an LRU cache at once, any other is answered with a blank placeholder while a worker thread
computes it (requests are debounced and only the latest one is computed: slices skipped over while
a slider moves are dropped). When the slice is ready the layer is refreshed and shows it. While a
slice is being computed the layer's name ends with ``(computing…)`` and ``busy_changed`` fires.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from superqt.utils import create_worker

COMPUTING = " (computing…)"
Key = tuple[Any, ...]


def _norm_key(key: Any, ndim: int) -> Key:
    """A hashable, canonical form of an index (ints and slice triples), padded to ``ndim``."""
    if not isinstance(key, tuple):
        key = (key,)
    out: list[Any] = []
    for k in key:
        if isinstance(k, slice):
            out.append(("s", k.start, k.stop, k.step))
        elif isinstance(k, int | np.integer):
            out.append(int(k))
        else:  # arrays, Ellipsis...: not cached by value
            raise TypeError(f"unsupported index {k!r}")
    out.extend([("s", None, None, None)] * (ndim - len(out)))
    return tuple(out)


def _key_to_index(key: Key) -> tuple[Any, ...]:
    return tuple(slice(*k[1:]) if isinstance(k, tuple) else k for k in key)


class AsyncArray(QObject):
    """An array-like over a dask array whose ``__getitem__`` never computes on the caller's thread.

    Attributes:
        dask: the wrapped lazy array (use it to export).
        computations: how many slices were computed (cache misses), for tests and the status.
        seconds, voxels: time spent computing slices and voxels computed (speed estimates).
    """

    ready = Signal(object)  #: a slice (its key) was computed and cached
    busy_changed = Signal(
        bool
    )  #: a slice the layer shows is being computed (True) or ready (False)
    failed = Signal(str)  #: computing a slice failed (the message)

    def __init__(
        self,
        darr: da.Array,
        *,
        cache_mb: float = 512.0,
        debounce_ms: int = 30,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.dask = darr
        self.cache_bytes = int(cache_mb * 1e6)
        self._cache: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._wanted: Key | None = None
        self._running: Key | None = None
        self._worker: Any = None
        self.computations = 0
        self.seconds = 0.0  # time spent computing slices (for export time estimates)
        self.voxels = 0  # voxels computed in that time
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
        except TypeError:  # an unusual index: answer a blank of the right shape, compute nothing
            return np.zeros(self.dask[key].shape, self.dtype)
        hit = self.cached(nkey)
        if hit is not None:
            self._wanted = nkey  # the view is here now: nothing to compute
            self.busy_changed.emit(False)
            return hit
        self.request(nkey)
        return np.zeros(self.dask[_key_to_index(nkey)].shape, self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "This layer is rendered on demand: export it from the Render & Export widget "
            "instead of converting it to one array."
        )

    # -- cache and worker ------------------------------------------------------------------------
    def cached(self, key: Key) -> np.ndarray | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _store(self, key: Key, value: np.ndarray) -> None:
        with self._lock:
            self._cache[key] = value
            total = sum(v.nbytes for v in self._cache.values())
            while total > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                total -= old.nbytes

    def request(self, key: Key) -> None:
        """Ask for ``key`` to be computed (debounced; it replaces any earlier pending request)."""
        self._wanted = key
        self.busy_changed.emit(True)
        self._timer.start()

    def _start_next(self) -> None:
        key = self._wanted
        if key is None or self._running is not None or self.cached(key) is not None:
            return
        self._running = key
        index = _key_to_index(key)
        block = self.dask[index]

        def compute() -> tuple[np.ndarray, float]:
            t0 = time.perf_counter()
            with dask.config.set(scheduler="threads"):
                value = np.asarray(block.compute())
            return value, time.perf_counter() - t0

        worker = create_worker(compute, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda result, k=key: self._done(k, *result))
        worker.errored.connect(lambda err, k=key: self._error(k, err))
        self._worker = worker
        worker.start()

    def _done(self, key: Key, value: np.ndarray, seconds: float = 0.0) -> None:
        self.computations += 1
        self.seconds += seconds
        self.voxels += int(value.size)
        self._store(key, value)
        self._running = None
        self._worker = None
        self.ready.emit(key)
        if self._wanted == key:
            self.busy_changed.emit(False)
        else:  # the view moved on while this slice computed: compute the latest request
            self._timer.start()

    def _error(self, key: Key, err: BaseException) -> None:
        self._running = None
        self._worker = None
        if self._wanted == key:
            self._wanted = None
        self.busy_changed.emit(False)
        self.failed.emit(str(err) or type(err).__name__)

    @property
    def busy(self) -> bool:
        return self._running is not None or (
            self._wanted is not None and self.cached(self._wanted) is None
        )

    def wait_idle(self) -> None:
        """Block until the running worker (if any) ends (for closing and tests)."""
        from superqt.utils import WorkerBase

        self._timer.stop()
        self._wanted = None
        WorkerBase.await_workers()


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


def async_array(darr: da.Array, cache_mb: float = 512.0) -> AsyncArray:
    """An :class:`AsyncArray` over ``darr`` whose layers update themselves (reader layer data)."""
    arr = AsyncArray(darr, cache_mb=cache_mb)
    connect_layer_updates(arr)
    return arr


def add_async_layer(
    viewer: Any,
    darr: da.Array,
    *,
    on_error: Callable[[str], None] | None = None,
    cache_mb: float = 512.0,
    **layer_kwargs: Any,
) -> Any:
    """Add an Image layer showing ``darr`` computed slice by slice off the GUI thread.

    ``layer_kwargs`` must include ``contrast_limits`` (never computed from the lazy data).
    Returns the layer; its ``data`` is an :class:`AsyncArray` (``layer.data.dask`` is the array).
    """
    if "contrast_limits" not in layer_kwargs:
        raise ValueError("contrast_limits are required: they are never computed from lazy data")
    arr = async_array(darr, cache_mb=cache_mb)
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
