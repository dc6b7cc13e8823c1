"""The render process helper: what it sends to the child process, and what comes back."""

import pickle
from concurrent.futures import Future

import dask.array as da
import numpy as np

from napari_spatimeinr import api
from napari_spatimeinr._layers import browse_plan
from napari_spatimeinr._widgets import processes
from napari_spatimeinr.core.config import TrainConfig
from napari_spatimeinr.store.model_dir import create_model_dir


class _HerePool:
    """Stands in for the process pool: runs the task here, records the bytes it was sent."""

    def __init__(self):
        self.sent: list[int] = []

    def submit(self, fn, payload):
        self.sent.append(len(payload))
        fut = Future()
        fut.set_result(fn(payload))
        return fut


def test_compute_sends_only_the_tasks_of_the_asked_block(monkeypatch, tmp_path, small_stack):
    pool = _HerePool()
    monkeypatch.setattr(processes, "process_pool", lambda: pool)
    md = create_model_dir(tmp_path / "m", small_stack, TrainConfig(method="linear"))
    layer = api.render_plan(browse_plan(api.plan_render(md, 4.0, (1.0, 1.0, 1.0))))
    block = layer.blocks[5, 1, 0, 0]  # what a lazy layer asks for: one plane
    [out] = processes.compute([block])
    np.testing.assert_allclose(out, layer[5:6, 1:2].compute(scheduler="sync"))
    # a block carries the whole layer's graph: pickling it held the GIL (the GUI) for 70-90 ms
    # per slice of a tz_yeast layer
    assert pool.sent[0] * 10 < len(pickle.dumps([block]))


def test_compute_falls_back_when_the_graph_cannot_be_sent(monkeypatch):
    pool = _HerePool()
    monkeypatch.setattr(processes, "process_pool", lambda: pool)
    darr = da.ones((4, 4), chunks=2).map_blocks(lambda b: b + 1)  # a local function
    [out] = processes.compute([darr.blocks[0, 0]])
    np.testing.assert_array_equal(out, np.full((2, 2), 2.0))
    assert pool.sent == []  # computed here
