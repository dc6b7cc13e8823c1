"""The renderer cache of a rendering process: least recently used out, and a renderer that loads
(it may compute every optical flow of a stack) never holds up the chunks of another model."""

from __future__ import annotations

import threading
import time

import pytest

from napari_spatimeinr import api
from napari_spatimeinr.render import lazy


@pytest.fixture
def models(tmp_path, small_stack):
    paths = []
    for i in range(lazy._CACHE_SIZE + 1):
        path = tmp_path / f"m{i}"
        list(api.train(small_stack, path, {"method": "linear"}))
        paths.append(path)
    lazy.clear_renderer_cache()
    yield paths
    lazy.clear_renderer_cache()


class _Method:
    """A method whose renderers are plain objects; ``gate`` holds the load of ``slow`` models."""

    def __init__(self):
        self.gate = threading.Event()
        self.slow: set[str] = set()
        self.loads: list[str] = []

    def load_renderer(self, md, device):
        self.loads.append(md.path.name)
        if md.path.name in self.slow:
            assert self.gate.wait(10), "the slow load was never released"
        return object()


@pytest.fixture
def method(monkeypatch):
    m = _Method()
    monkeypatch.setattr(lazy, "get_method", lambda name: m)
    return m


def test_the_least_recently_used_renderer_goes_first(models, method):
    first = {p.name: lazy.get_renderer(p)[1] for p in models[:4]}
    assert lazy.get_renderer(models[0])[1] is first["m0"]  # a hit: m0 is now the most recent
    lazy.get_renderer(models[4])  # a fifth model: m1, the least recently used, goes
    assert lazy.get_renderer(models[0])[1] is first["m0"]
    assert lazy.get_renderer(models[2])[1] is first["m2"]
    assert method.loads == ["m0", "m1", "m2", "m3", "m4"]
    lazy.get_renderer(models[1])
    assert method.loads[-1] == "m1"


def test_a_loading_renderer_does_not_block_other_models(models, method):
    cached = lazy.get_renderer(models[0])[1]
    method.slow.add(models[1].name)
    loaders = [
        threading.Thread(target=lazy.get_renderer, args=(models[1],), daemon=True) for _ in range(2)
    ]
    for loader in loaders:
        loader.start()
    while models[1].name not in method.loads:
        time.sleep(0.01)
    got: dict[str, object] = {}

    def other_chunks():
        got["hit"] = lazy.get_renderer(models[0])[1]  # a cache hit
        got["new"] = lazy.get_renderer(models[2])[1]  # another model's load

    t = threading.Thread(target=other_chunks, daemon=True)
    t.start()
    t.join(5)
    blocked = t.is_alive()
    method.gate.set()
    for loader in loaders:
        loader.join(10)
    assert not blocked, "chunks of other models waited for a renderer that was loading"
    assert got["hit"] is cached and got["new"] is not None
    # the same model asked for twice while it loads is loaded once
    assert method.loads.count(models[1].name) == 1
