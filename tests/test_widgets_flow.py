"""The whole napari flow: sample → Train → Stop → lazy layer (shape, scale) → export → read back."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr._widgets.async_layer import is_async_layer  # noqa: E402
from napari_spatimeinr._widgets.render import RenderWidget  # noqa: E402
from napari_spatimeinr._widgets.train import TrainWidget  # noqa: E402
from napari_spatimeinr.core.progress import Progress  # noqa: E402

pytestmark = pytest.mark.gui
HAS_ENGINE = importlib.util.find_spec("napari_spatimeinr.engines.spatimeinr") is not None


def _docked(viewer):
    _, train = viewer.window.add_plugin_dock_widget("napari-spatimeinr", "Train")
    _, render = viewer.window.add_plugin_dock_widget("napari-spatimeinr", "Render & Export")
    assert isinstance(train, TrainWidget) and isinstance(render, RenderWidget)
    return train, render


def _train(qtbot, train, tmp_path, method, stop_after=None):
    train.method_combo.setCurrentText(method)
    train.out_edit.setText(str(tmp_path / f"{method}.spatimeinr"))
    train._out_auto = False
    assert train.validate(), train.error_label.text()
    with qtbot.waitSignal(train.model_ready, timeout=40000):
        train.start()
        if stop_after is not None:
            qtbot.waitUntil(lambda: train.last_progress is not None, timeout=30000)
            train.stop()
    assert not train.error_label.text()


def test_sample_train_render_export(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-spatimeinr", "nuclei_timelapse")
    [inp] = viewer.layers
    assert inp.data.shape == (12, 12, 64, 64) and tuple(inp.scale) == (30.0, 1.0, 0.2, 0.2)
    train, render = _docked(viewer)
    _train(qtbot, train, tmp_path, "cubic")
    assert render.model_combo.currentData() == str((tmp_path / "cubic.spatimeinr").resolve())

    render.scale_t.setValue(2.0)
    render.scale_z.setValue(2.0)
    layer = render.add_layer()
    assert layer is not None and is_async_layer(layer)
    assert layer.data.shape == (23, 24, 64, 64)
    np.testing.assert_allclose(layer.scale, (15.0, 0.5, 0.2, 0.2))
    md = api.open_model(tmp_path / "cubic.spatimeinr")
    assert tuple(layer.contrast_limits) == pytest.approx((md.norm.low, md.norm.high))
    qtbot.waitUntil(lambda: not layer.data.busy, timeout=60_000)  # the slice in view is shown
    render.set_grid(True)
    assert render.grid().enabled

    out = tmp_path / "render.tif"
    render.path_edit.setText(str(out))
    with qtbot.waitSignal(render.export_done, timeout=30000) as done:
        assert render.export()
    assert done.args[0] == str(out)
    qtbot.waitUntil(lambda: render.export_worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: "export ≈" in render.output_info.text(), timeout=60_000)  # measured
    with tifffile.TiffFile(out) as tf:
        ij = tf.imagej_metadata
        assert ij["finterval"] == pytest.approx(15.0)
        assert ij["spacing"] == pytest.approx(0.5)
        xres = tf.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(5.0)
        assert tf.series[0].shape[:2] == (23, 24)

    # a second export to the same file asks first; "No" leaves it alone
    asked = []
    render.confirm_overwrite = lambda p: asked.append(p) or False
    mtime = out.stat().st_mtime_ns
    assert not render.export()
    assert asked == [out] and out.stat().st_mtime_ns == mtime


def test_stop_keeps_usable_model(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Stop ends the run after the current step; the model folder is then renderable."""
    real_train = api.train

    def slow_train(source, out_dir, config=None, *, stop=None, **kw):
        cfg = dict(config.model_dump()) if config is not None else {}
        cfg["method"] = "linear"
        yield from real_train(source, out_dir, cfg, stop=stop, **kw)
        for step in range(1, 10_000):  # an endless "training" that honours stop()
            time.sleep(0.02)
            yield Progress(step=step, total=None, loss=1.0 / step, psnr=20 + step / 10)
            if stop():
                return

    monkeypatch.setattr(api, "train", slow_train)
    monkeypatch.setattr(TrainWidget, "in_process", False)  # the patched api.train, here
    viewer = make_napari_viewer()
    viewer.open_sample("napari-spatimeinr", "nuclei_timelapse")
    train, render = _docked(viewer)
    _train(qtbot, train, tmp_path, "linear", stop_after=1)
    assert "stopped early" in train.status.text()
    assert train.plot.loss  # the live plot received points
    layer = render.add_layer()
    assert layer.data.shape[0] == 23


@pytest.mark.skipif(not HAS_ENGINE, reason="the spatimeinr engine is not there yet")
def test_spatimeinr_few_steps_then_stop(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    data = np.asarray(
        __import__("napari_spatimeinr.data.synthetic", fromlist=["x"])
        .make_nuclei_timelapse(shape=(4, 6, 24, 24))
        .data
    )
    viewer.add_image(data, name="tiny", scale=(30.0, 1.0, 0.2, 0.2))
    train, render = _docked(viewer)
    train.time_spin.setValue(120)
    train.steps_spin.setValue(10**6)  # Stop ends the run once a preview was shown
    for name, v in {
        "latent_dim": 8,
        "encoder_features": 8,
        "mlp_width": 16,
        "mlp_depth": 2,
    }.items():
        train.advanced.set_value(name, v)
    train.advanced.set_value("batch_size", 256)
    train.advanced.set_value("spatial", False)  # the time engine's checkpoints feed the preview
    train.preview_every = 1.0
    viewer.dims.set_current_step(0, 2)  # the preview follows the sliders
    train.method_combo.setCurrentText("spatimeinr")
    train.out_edit.setText(str(tmp_path / "spatimeinr.spatimeinr"))
    train._out_auto = False
    assert train.validate(), train.error_label.text()
    with qtbot.waitSignal(train.model_ready, timeout=60000):
        with qtbot.waitSignal(train.preview_ready, timeout=90000) as shown:
            train.start()
            # added right after the click (black, additive), so training only swaps its data
            qtbot.waitUntil(lambda: any("preview" in ly.metadata for ly in viewer.layers))
            [waiting] = [ly for ly in viewer.layers if "preview" in ly.metadata]
            assert waiting.name.endswith("(waiting for the first checkpoint)")
            assert not waiting.data.any() and waiting.blending == "additive"
            assert viewer.layers.selection.active.name == "tiny"
        preview = shown.args[0]  # shown while training, from a checkpoint
        # the same layer, now named as the model and holding the rendered plane
        assert [ly.name for ly in viewer.layers if "preview" in ly.metadata] == ["tiny preview"]
        assert preview.name == "tiny preview"
        assert preview in viewer.layers and train.running and preview.data.any()
        train.stop()
    assert not train.error_label.text()
    assert preview.data.shape == (24, 24) and preview.metadata["preview"]["t"] == 2
    np.testing.assert_allclose(preview.scale, (0.2, 0.2))
    assert tuple(preview.units) == tuple(viewer.layers["tiny"].units)[-2:]  # as the input's
    assert preview not in viewer.layers  # training ended: the preview is gone
    layer = render.add_layer()
    assert layer.data.shape == (7, 6, 24, 24)
    qtbot.waitUntil(lambda: not layer.data.busy, timeout=30000)
    render.set_grid(True)
    assert render.grid().shape == (1, 2)  # the input and the render, no preview
