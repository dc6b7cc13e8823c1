"""Async lazy layers: moving sliders never blocks the Qt event loop; visited slices are reused."""

from __future__ import annotations

import threading
import time

import dask.array as da
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_spatimeinr._widgets.async_layer import COMPUTING, add_async_layer, is_async_layer

pytestmark = pytest.mark.gui


def _slow_array(nt=4, sleep=0.5, counter=None, chunks=(1, 2, 16, 16)):
    """(nt, 2, 16, 16) with value t + 1 + z / 10; each chunk sleeps and counts its computations."""
    base = da.from_array(
        np.arange(nt, dtype=np.float32)[:, None, None, None]
        + np.array([0, 0.1], np.float32)[None, :, None, None]
        + np.zeros((1, 2, 16, 16), np.float32),
        chunks=chunks,
    )

    def work(block, block_info=None):
        if counter is not None:
            with counter["lock"]:
                loc = block_info[0]["chunk-location"]
                counter[loc[0]] = counter.get(loc[0], 0) + 1
                counter["blocks"] = counter.get("blocks", 0) + 1
        time.sleep(sleep)
        return block + 1

    return base.map_blocks(work, dtype=np.float32)


def _shown(layer):
    return np.asarray(layer._slice.image.raw)


def test_sliders_never_block_event_loop(make_napari_viewer, qtbot):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    layer = add_async_layer(viewer, _slow_array(sleep=0.5), contrast_limits=(0, 5), name="slow")
    arr = layer.data
    qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)

    stamps: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    t_start = time.perf_counter()
    saw_computing = False
    for t in (1, 2, 3):
        viewer.dims.set_current_step(0, t)
        saw_computing |= layer.name.endswith(COMPUTING)
        qtbot.wait(100)
    qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    timer.stop()
    assert saw_computing
    assert layer.name == "slow"
    assert time.perf_counter() - t_start > 0.5  # a slice really took time
    gaps = np.diff([t_start, *stamps])
    assert gaps.max() < 0.2, f"event loop blocked for {gaps.max() * 1000:.0f} ms"
    np.testing.assert_array_equal(_shown(layer), np.full((16, 16), 4, np.float32))
    # only the slice in view when the slider stopped was computed, plus the one already running
    # then: slices skipped over (t = 2 here) were dropped
    assert arr.computations <= 3


def test_visited_slices_come_from_the_cache(make_napari_viewer, qtbot):
    counter: dict = {"lock": threading.Lock()}
    viewer = make_napari_viewer()
    layer = add_async_layer(
        viewer, _slow_array(sleep=0.01, counter=counter), contrast_limits=(0, 5), name="lazy"
    )
    arr = layer.data
    for t in (0, 1, 2, 1, 0, 2):
        viewer.dims.set_current_step(0, t)
        qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
        np.testing.assert_array_equal(_shown(layer), np.full((16, 16), t + 1, np.float32))
    assert {t: counter[t] for t in range(3)} == {0: 1, 1: 1, 2: 1}
    assert arr.computations == 3
    # the other plane of a computed chunk (z = 1) comes from the same cached chunk
    viewer.dims.set_current_step(1, 1)
    qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    np.testing.assert_allclose(_shown(layer), np.full((16, 16), 3.1, np.float32))
    assert arr.computations == 3 and counter["blocks"] == 3


def test_3d_view_reuses_planes_seen_in_2d(make_napari_viewer, qtbot):
    counter: dict = {"lock": threading.Lock()}
    arr_d = _slow_array(sleep=0.01, counter=counter, chunks=(1, 1, 16, 16))
    viewer = make_napari_viewer()
    layer = add_async_layer(viewer, arr_d, contrast_limits=(0, 5), name="planes")
    arr = layer.data
    for z in (0, 1):  # both planes of frame 0 in 2D
        viewer.dims.set_current_step(1, z)
        qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    assert counter["blocks"] == 2
    viewer.dims.ndisplay = 3  # the whole frame: assembled from the two cached planes
    qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    assert counter["blocks"] == 2 and arr.cached_blocks() == 2
    t = viewer.dims.current_step[0]
    np.testing.assert_allclose(_shown(layer)[:, 0, 0], [t + 1.0, t + 1.1])


def test_speed_is_typical_not_first(make_napari_viewer, qtbot):
    """The first slice also pays one-off costs (model load): the speed estimate ignores it."""
    state = {"first": True}

    def work(block):
        time.sleep(0.5 if state.pop("first", False) else 0.01)
        return block

    darr = da.zeros((4, 1, 64, 64), np.float32, chunks=(1, 1, 64, 64)).map_blocks(
        work, meta=np.empty((0, 0, 0, 0), np.float32)
    )
    viewer = make_napari_viewer()
    layer = add_async_layer(viewer, darr, contrast_limits=(0, 1), name="s")
    arr = layer.data
    qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    assert arr.speed is None  # one computation: not enough to tell
    for t in (0, 1, 2):
        viewer.dims.set_current_step(0, t)
        qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    assert arr.speed > 64 * 64 / 0.2  # the 0.5 s first slice does not set the pace


def test_model_dir_opens_with_async_render(make_napari_viewer, qtbot, tmp_path, small_stack):
    from napari_spatimeinr import api

    out = tmp_path / "m.spatimeinr"
    list(api.train(small_stack, out, {"method": "linear"}))
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-spatimeinr")
    inp, lazy = viewer.layers
    assert is_async_layer(lazy) and lazy.data.shape == (11, 5, 24, 20)
    viewer.dims.set_current_step(0, 3)
    qtbot.waitUntil(lambda: not lazy.data.busy, timeout=60_000)
    assert lazy.data.computations >= 1
    assert not lazy.name.endswith(COMPUTING)
    assert np.asarray(lazy._slice.image.raw).std() > 0


def test_save_async_layer_through_writer(make_napari_viewer, qtbot, tmp_path, small_stack):
    """File → Save Layers on a lazy render streams its dask array (no conversion to one array)."""
    import tifffile

    from napari_spatimeinr import api

    out = tmp_path / "m.spatimeinr"
    list(api.train(small_stack, out, {"method": "linear"}))
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-spatimeinr")
    lazy = viewer.layers[1]
    [written] = lazy.save(str(tmp_path / "r.tif"), plugin="napari-spatimeinr")
    with tifffile.TiffFile(written) as tf:
        assert tf.series[0].shape[:2] == (11, 5)
        assert tf.imagej_metadata["finterval"] == pytest.approx(15.0)


def test_3d_view_gets_whole_volumes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = add_async_layer(viewer, _slow_array(sleep=0.0), contrast_limits=(0, 5), name="v")
    viewer.dims.ndisplay = 3
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: not layer.data.busy, timeout=60_000)
    np.testing.assert_allclose(_shown(layer)[:, 0, 0], [3.0, 3.1])


@pytest.mark.parametrize(
    "key",
    [
        (1, 2),
        (-1, 0, slice(None), slice(3, 11)),
        (slice(None), 4),
        (2, slice(1, 5), slice(2, 13, 3)),
        (0, -3, slice(5, 6), slice(None, None, 2)),
        (slice(1, 3), slice(None), 7, slice(0, 9)),
    ],
)
def test_slices_assembled_from_chunks_equal_numpy(qtbot, key):
    """Any index napari may send is answered from cached chunks exactly as numpy would."""
    from napari_spatimeinr._widgets.async_layer import AsyncArray

    ref = np.random.default_rng(0).random((3, 6, 10, 14)).astype(np.float32)
    arr = AsyncArray(da.from_array(ref, chunks=(1, 4, 3, 5)), debounce_ms=0)
    blank = arr[key]
    assert blank.shape == ref[key].shape and not blank.any()  # at once, a placeholder
    qtbot.waitUntil(lambda: not arr.busy, timeout=60_000)
    np.testing.assert_array_equal(arr[key], ref[key])
    n = arr.computations
    np.testing.assert_array_equal(arr[key], ref[key])
    assert arr.computations == n  # the second time from the cache
