"""Issue #14 in the widgets: the Render widget applies a model to any image layer; the Train widget
starts from a model (a warm start)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import smooth_random  # noqa: E402
from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr._layers import META_KEY  # noqa: E402
from napari_spatimeinr._widgets.render import APPLY_OWN, RenderWidget  # noqa: E402
from napari_spatimeinr._widgets.train import TrainWidget  # noqa: E402
from napari_spatimeinr.data.stack import Stack4D  # noqa: E402

pytestmark = pytest.mark.gui


def stack(seed: int, shape=(4, 1, 24, 24)) -> Stack4D:
    return Stack4D(smooth_random(shape, seed=seed), voxel_size=(1.0, 0.2, 0.2), frame_interval=30.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("wreuse") / "a.spatimeinr"
    list(api.train(stack(1), out, {"steps": 5, "device": "cpu"}))
    return out


def test_render_widget_applies_the_model_to_a_layer(
    make_napari_viewer, qtbot, model, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPATIMEINR_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    other = stack(7)
    viewer.add_image(other.data, name="other", scale=(30.0, 1.0, 0.2, 0.2))
    viewer.add_image(stack(8, (4, 3, 24, 24)).data, name="volume", scale=(30.0, 1.0, 0.2, 0.2))
    w = RenderWidget(viewer)
    qtbot.addWidget(w)
    w.add_model(model)
    names = [w.apply_combo.itemText(i) for i in range(w.apply_combo.count())]
    assert names[0] == APPLY_OWN and {"other", "volume"} <= set(names)
    w.scale_t.setValue(2.0)
    own = api.render_plan(w.plan()).compute()
    w.apply_combo.setCurrentText("other")  # prepared in a worker thread, then the plan follows
    qtbot.waitUntil(lambda: w.apply_worker is None and w.add_btn.isEnabled(), timeout=60000)
    plan = w.plan()
    assert plan.meta.provenance["source_name"] == "other"
    assert plan.meta.provenance["model_dir"] == str(model.resolve())
    assert plan.shape == (7, 1, 24, 24)
    got = api.render_plan(plan).compute()
    assert np.abs(got[::2] - other.data).mean() < np.abs(own[::2] - other.data).mean()
    w.path_edit.setText(str(tmp_path / "other_t2.tif"))
    assert w.copy_command() == ""  # the layer has no file: a command cannot name it
    assert "has no file" in w.error_label.text()
    w.apply_combo.setCurrentText("volume")  # a 3D+t layer for a 2D+t model: one clear reason
    assert "2D+t" in w.error_label.text() and "3D+t" in w.error_label.text()
    assert not w.add_btn.isEnabled()
    w.apply_combo.setCurrentText(APPLY_OWN)
    assert w.plan().meta.provenance.get("applied") is None and w.add_btn.isEnabled()
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the layer's normalization and flows


def test_train_widget_starts_from_a_model(make_napari_viewer, qtbot, model, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(stack(3).data, name="new", scale=(30.0, 1.0, 0.2, 0.2))
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    w.axes_edit.setText("TZYX")
    w.steps_spin.setValue(3)
    w.out_edit.setText(str(tmp_path / "warm.spatimeinr"))
    w.init_edit.setText(str(tmp_path / "missing"))
    assert not w.train_btn.isEnabled() and "No model directory" in w.error_label.text()
    w.init_edit.setText(str(model))
    assert w.train_btn.isEnabled(), w.error_label.text()
    w.viewer.layers["new"].metadata[META_KEY] = {"source_path": str(tmp_path / "n.tif")}
    argv = w.command_argv()
    assert argv[argv.index("--init-from") + 1] == str(model.resolve())
    with qtbot.waitSignal(w.model_ready, timeout=120000):
        w.start()
    meta = json.loads((tmp_path / "warm.spatimeinr" / "meta.json").read_text())
    assert meta["init_from"]["model_dir"] == str(model.resolve())
