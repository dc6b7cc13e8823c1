"""napari and channels (issue 23): the Train tab takes several layers (or a layer with a channel
axis) as the channels of one model; Render & Export shows one layer per channel in its colour."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr.data.stack import ChannelStack, Stack4D  # noqa: E402
from napari_spatimeinr.data.synthetic import make_two_channel_timelapse  # noqa: E402

pytestmark = pytest.mark.gui
SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)


@pytest.fixture(scope="module")
def two():
    return make_two_channel_timelapse((5, 3, 20, 20), n_nuclei=2, seed=2)


@pytest.fixture(scope="module")
def model(tmp_path_factory, two):
    out = tmp_path_factory.mktemp("wch") / "two.spatimeinr"
    list(api.train(two, out, {"steps": 2, "device": "cpu", "params": SMALL}))
    return out


def test_train_tab_takes_layers_as_channels(make_napari_viewer, qtbot, two):
    from napari_spatimeinr._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    a = viewer.add_image(two.channels[0].data, name="nuclei", colormap="green")
    viewer.add_image(two.channels[1].data, name="membrane", colormap="magenta")
    viewer.add_image(np.random.default_rng(0).random((2, 3, 4, 4)), name="other shape")
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    w.layer_combo.setCurrentText(a.name)
    assert isinstance(w.stack(), Stack4D)  # nothing checked: one channel, as before
    items = [w.channels_list.item(i).text() for i in range(w.channels_list.count())]
    assert "nuclei" not in items and "membrane" in items
    w.set_channel_layers(["membrane"])
    stack = w.stack()
    assert isinstance(stack, ChannelStack)
    assert stack.names == ["nuclei", "membrane"] and stack.colors == ["green", "magenta"]
    np.testing.assert_array_equal(stack.channels[1].data, two.channels[1].data)
    w.set_channel_layers(["membrane", "other shape"])
    with pytest.raises(Exception, match="channels of one model have one shape"):
        w.stack()


def test_train_tab_trains_one_model_of_the_channels(make_napari_viewer, qtbot, two, tmp_path):
    """Through the training process the GUI uses: one model, the layers' names and colours."""
    from napari_spatimeinr._widgets.train import TrainWidget
    from napari_spatimeinr.store.model_dir import ModelDir, channel_dirs

    viewer = make_napari_viewer()
    viewer.add_image(two.channels[0].data, name="nuclei", colormap="green")
    viewer.add_image(two.channels[1].data, name="membrane", colormap="magenta")
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    w.layer_combo.setCurrentText("nuclei")
    w.set_channel_layers(["membrane"])
    w.method_combo.setCurrentText("cubic")
    out = tmp_path / "both.cubic"
    w.out_edit.setText(str(out))
    assert w.validate(), w.error_label.text()
    with qtbot.waitSignal(w.model_ready, timeout=120_000):
        w.start()
    root = ModelDir(out)
    assert root.meta["channel_names"] == ["nuclei", "membrane"]
    assert root.meta["channel_colors"] == ["green", "magenta"]
    assert len(channel_dirs(root)) == 2


def test_a_layer_with_a_channel_axis_is_every_channel(make_napari_viewer, two):
    from napari_spatimeinr._widgets.forms import layer_to_stack

    viewer = make_napari_viewer()
    data = np.stack([c.data for c in two.channels], axis=1)  # TCZYX
    layer = viewer.add_image(data, name="both")
    stack = layer_to_stack(layer, "TCZYX", (1.0, 0.2, 0.2), 30.0)
    assert isinstance(stack, ChannelStack) and stack.n == 2 and stack.shape == two.shape


def test_render_tab_one_layer_per_channel(make_napari_viewer, qtbot, model):
    from napari_spatimeinr._widgets.render import RenderWidget

    w = RenderWidget(make_napari_viewer())
    qtbot.addWidget(w)
    w.add_model(model)
    w.scale_t.setValue(2.0)
    w.uncertainty_check.setChecked(False)
    first = w.add_layer()
    assert first is not None
    renders = w.added_layers
    assert len(renders) == 2
    assert [ly.colormap.name for ly in renders] == ["green", "magenta"]
    assert "[nuclei]" in renders[0].name and "[membrane]" in renders[1].name
    assert all(ly.data.shape == (9, 3, 20, 20) for ly in renders)
    inputs = [ly for ly in w.viewer.layers if ly.name.endswith("(input)")]
    assert sorted(ly.colormap.name for ly in inputs) == ["green", "magenta"]
    w.uncertainty_check.setChecked(True)
    assert len(w.uncertainty_layers) == 2
    assert all("uncertainty" in ly.name for ly in w.uncertainty_layers)


def test_qc_tab_reports_each_channel(make_napari_viewer, qtbot, two):
    from napari_spatimeinr._widgets.qc import QCWidget

    viewer = make_napari_viewer()
    data = np.stack([c.data for c in two.channels], axis=1)  # TCZYX
    viewer.add_image(data, name="both", scale=(30.0, 1.0, 1.0, 0.2, 0.2))
    w = QCWidget(viewer)
    qtbot.addWidget(w)
    w.axes_edit.setText("TCZYX")
    w._axes_edited("TCZYX")
    w.method_combo.setCurrentText("linear")
    assert w.run_button.isEnabled(), w.plan_label.text()
    w.run_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    res = w.result
    assert res is not None, w.status_label.text()
    names = [w.table.item(r, 0).text() for r in range(w.table.rowCount())]
    assert names[0] == "C0 · linear" and "C1 · linear" in names  # a layer names no channel
    assert "one model of 2 channels" in w.status_label.text()
    assert len(res.channels) == 2
    truth = next(ly for ly in viewer.layers if "QC truth" in ly.name)
    assert truth.data.shape == two.shape
    np.testing.assert_array_equal(truth.data, two.channels[0].data)
