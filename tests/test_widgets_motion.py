"""Render widget, "Show motion": a Vectors layer at the input's physical scale that follows the
time slider, computed off the GUI thread; models without motion do not offer it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import run_generator  # noqa: E402
from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr._widgets.render import RenderWidget  # noqa: E402
from napari_spatimeinr.data.stack import Stack4D  # noqa: E402

pytestmark = pytest.mark.gui

SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)


def _moving_blobs(n_t=4, shape=(3, 40, 48)):
    """Two blobs: one moving right, one moving down faster, in a z stack (TZYX)."""
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    frames = []
    for t in range(n_t):
        a = np.exp(-((yy - 12) ** 2 + (xx - 10 - 2 * t) ** 2) / 18.0)
        b = np.exp(-((yy - 8 - 3 * t) ** 2 + (xx - 34) ** 2) / 18.0)
        frames.append(1000 * (a + b) * np.exp(-((zz - 1) ** 2) / 4.0) + 100)
    return np.stack(frames)


@pytest.fixture
def motion_model(tmp_path):
    stack = Stack4D(
        _moving_blobs(),
        voxel_size=(1.5, 0.4, 0.3),
        frame_interval=5.0,
        origin=(10.0, 3.0, 2.0, 1.0),
        name="blobs",
    )
    path = tmp_path / "blobs.spatimeinr"
    run_generator(api.train(stack, path, {"steps": 3, "device": "cpu", "params": SMALL}))
    return path


def test_show_motion_adds_vectors_at_the_input_scale_that_follow_time(
    make_napari_viewer, qtbot, motion_model
):
    from napari.layers import Vectors

    viewer = make_napari_viewer()
    w = RenderWidget(viewer)
    qtbot.addWidget(w)
    w.add_model(motion_model)
    assert w.motion_check.isEnabled()
    w.motion_check.setChecked(True)  # as a click
    mv = w.motion
    layer = mv.layer
    assert isinstance(layer, Vectors)
    inp = next(ly for ly in viewer.layers if ly.name == "blobs (input)")
    np.testing.assert_allclose(layer.scale, inp.scale[1:])  # (z, y, x) µm: the input's
    np.testing.assert_allclose(layer.translate, inp.translate[1:])
    np.testing.assert_allclose(layer.scale, (1.5, 0.4, 0.3))
    viewer.dims.set_current_step(0, 0)  # the first frame (napari starts in the middle)
    qtbot.waitUntil(
        lambda: (mv.shown == 0 and not mv.busy) or bool(w.error_label.text()), timeout=60000
    )
    assert w.error_label.text() == ""
    assert layer.name == "blobs motion 0→1"
    field = api.motion(motion_model)
    np.testing.assert_allclose(layer.data, field.vectors(0, mv.step, signal_only=True))
    assert mv.step == 2  # arrows every 2nd voxel in y and x, on the blobs only:
    assert 0 < len(layer.data) < 3 * 20 * 24 / 4
    on_blob = (np.abs(layer.data[:, 0, 1] - 12) < 6) & (np.abs(layer.data[:, 0, 2] - 10) < 6)
    on_blob |= (np.abs(layer.data[:, 0, 1] - 8) < 6) & (np.abs(layer.data[:, 0, 2] - 34) < 6)
    assert on_blob.all()
    speed = layer.features["speed_um_per_s"].to_numpy()
    assert speed.max() > 0

    viewer.dims.set_current_step(0, 2)  # the time slider: frame 2 -> arrows of interval 2
    qtbot.waitUntil(lambda: mv.shown == 2 and not mv.busy, timeout=60000)
    np.testing.assert_allclose(layer.data, field.vectors(2, mv.step, signal_only=True))
    assert layer.name == "blobs motion 2→3"
    viewer.dims.set_current_step(0, 3)  # the last frame: no next frame, the last interval
    qtbot.wait(200)
    assert mv.interval_in_view() == 2

    w.motion_check.setChecked(False)
    assert layer not in viewer.layers and w.motion is None
    w.motion_check.setChecked(True)
    viewer.layers.remove(w.motion.layer)  # deleting the layer unticks the box
    assert not w.motion_check.isChecked() and w.motion is None


def test_models_without_motion_do_not_offer_it(make_napari_viewer, qtbot, tmp_path, small_stack):
    run_generator(api.train(small_stack, tmp_path / "lin", {"method": "linear"}))
    viewer = make_napari_viewer()
    w = RenderWidget(viewer)
    qtbot.addWidget(w)
    w.add_model(tmp_path / "lin")
    assert not w.motion_check.isEnabled()
    assert "no motion" in w.motion_check.toolTip()
    assert w.show_motion(True) is None
    assert "does not estimate motion" in w.error_label.text()
    assert not any(ly.__class__.__name__ == "Vectors" for ly in viewer.layers)
