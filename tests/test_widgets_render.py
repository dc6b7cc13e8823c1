"""Render & Export widget: regions, time range, overwrite question, Cancel leaves no file."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr._widgets.render import ROI_VIEW, RenderWidget  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer, qtbot, tmp_path, small_stack):
    out = tmp_path / "m.spatimeinr"
    list(api.train(small_stack, out, {"method": "linear"}))
    viewer = make_napari_viewer()
    w = RenderWidget(viewer)
    qtbot.addWidget(w)
    w.add_model(out)
    return w


def test_time_range_and_shapes_region(widget):
    w = widget
    w.scale_t.setValue(2.0)
    w.t_check.setChecked(True)
    w.t_from.setValue(1)
    w.t_to.setValue(3)
    assert w.plan().shape[0] == 5  # instants 1, 1.5, ..., 3
    # a rectangle over y 1..2 µm, x 0.4..1.6 µm (voxels 0.2 µm): rows 5..10, columns 2..8
    shapes = w.viewer.add_shapes([np.array([[1.0, 0.4], [2.0, 1.6]])], shape_type="rectangle")
    w.roi_combo.setCurrentText(f"shapes: {shapes.name}")
    assert w.roi(api.open_model(w.model_combo.currentData())) == (0, 5, 5, 11, 2, 9)
    assert w.plan().shape[2:] == (6, 7)
    w._ensure_input_layer(api.open_model(w.model_combo.currentData()))
    w.roi_combo.setCurrentText(ROI_VIEW)  # the whole image is in view after reset
    w.viewer.reset_view()
    assert w.plan().shape[2:] == (24, 20)
    w.viewer.scene.camera.zoom *= 4  # zoomed in on the centre: a part of it
    ny, nx = w.plan().shape[2:]
    assert ny < 24 and nx < 20


def test_keep_measured_check_box_reaches_the_plan(widget):
    w = widget
    w.scale_t.setValue(2.0)
    assert not w.plan().keep_measured
    assert w.plan().meta.provenance["measured_frames"].startswith("model estimate")
    w.keep_measured.setChecked(True)
    assert w.plan().keep_measured
    assert w.plan().meta.provenance["measured_frames"] == "as acquired"


def test_add_layer_overlays_input(widget, qtbot):
    w = widget
    w.scale_t.setValue(1.0)
    w.scale_z.setValue(2.0)
    assert "on disk" in w.output_info.text() and "browse a few slices" in w.output_info.text()
    layer = w.add_layer()
    assert layer.name == "tiny · linear z×2 (computing…)"  # the slice in view is on its way
    assert layer.data.shape == (6, 10, 24, 20)
    qtbot.waitUntil(lambda: not layer.data.busy, timeout=60_000)
    assert layer.name == "tiny · linear z×2"
    w.viewer.dims.set_current_step(1, 0)  # a second plane: the speed is known
    qtbot.waitUntil(lambda: not layer.data.busy, timeout=60_000)
    assert "(from the slices shown)" in w.output_info.text()
    np.testing.assert_allclose(layer.scale, (30.0, 0.5, 0.2, 0.2))
    inp = next(ly for ly in w.viewer.layers if ly is not layer)  # the input was added beside it
    assert inp.data.shape == (6, 5, 24, 20)
    # both are centred on the same physical position along z (world coordinates)
    centre = layer.translate[1] + (10 - 1) * 0.5 / 2
    assert centre == pytest.approx(inp.translate[1] + (5 - 1) * 1.0 / 2)


def test_cancel_leaves_no_file(widget, qtbot, tmp_path):
    w = widget
    w.scale_t.setValue(8.0)
    w.scale_z.setValue(2.0)
    out = tmp_path / "big.ome.tif"
    w.path_edit.setText(str(out))
    with qtbot.waitSignal(w.export_done, timeout=30000) as done:
        assert w.export()
        w.cancel()
    assert done.args[0] == ""
    assert "cancelled" in w.status.text()
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.spatimeinr"]


def test_bad_suffix_refused(widget):
    widget.path_edit.setText("/tmp/out.png")
    assert not widget.export()
    assert ".tif" in widget.error_label.text()


@pytest.mark.parametrize("axis", ["scale_y", "scale_t"])
def test_absurd_factor_is_refused_without_allocation(widget, axis):
    """Issue 13: ×1e6 greys out Add layer and Export, says why in the info line, allocates
    nothing, and the viewer stays usable."""
    import resource

    w = widget
    w.path_edit.setText(str(w.model_combo.currentData()) + "_x.tif")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for s in (w.scale_t, w.scale_z, w.scale_y, w.scale_x):
        s.setValue(1.0)
    getattr(w, axis).setValue(1e6)
    assert getattr(w, axis).value() == 1e6  # the gate refuses, not the spin box
    info = w.output_info.text()
    assert "B" in info and ("limit" in info or "available" in info), info
    assert not w.add_btn.isEnabled() and not w.export_btn.isEnabled()
    n_layers = len(w.viewer.layers)
    assert w.add_layer() is None  # the button is grey; a direct call is refused too
    assert not w.export()
    assert len(w.viewer.layers) == n_layers
    assert w.error_label.text()  # the refusal is shown
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 200, grown_mb
    getattr(w, axis).setValue(2.0)  # back to a sane factor: both buttons come back
    assert w.add_btn.isEnabled() and w.export_btn.isEnabled()
    assert w.add_layer() is not None


def test_isotropic_button_sets_z_to_the_voxel_ratio(widget):
    w = widget
    w.scale_y.setValue(2.0)
    w.iso_btn.click()
    assert w.scale_z.value() == pytest.approx(5.0)  # 1 µm / 0.2 µm
    assert w.scale_y.value() == 1.0 and w.scale_x.value() == 1.0
    assert w.plan().shape[1:] == (25, 24, 20)
    assert "0.2 × 0.2 × 0.2 µm" in w.iso_label.text()


def test_show_uncertainty_adds_a_lazy_layer_computed_off_the_gui_thread(
    make_napari_viewer, qtbot, tmp_path, small_stack
):
    from napari_spatimeinr._widgets.async_layer import AsyncArray
    from napari_spatimeinr.render import lazy

    small = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)
    out = tmp_path / "fast.spatimeinr"
    list(api.train(small_stack, out, {"steps": 3, "device": "cpu", "params": small}))
    w = RenderWidget(make_napari_viewer())
    qtbot.addWidget(w)
    w.add_model(out)
    w.scale_t.setValue(2.0)
    lazy.clear_renderer_cache()
    w.uncertainty_check.setChecked(True)  # no render layer yet: nothing to add
    assert w.uncertainty_layers == []
    render = w.add_layer()
    assert len(w.uncertainty_layers) == 1
    unc = w.uncertainty_layers[0]
    assert isinstance(unc.data, AsyncArray) and unc.data.computations == 0  # lazy
    assert unc.data.shape == render.data.shape
    assert unc.colormap.name == "inferno" and unc.blending == "additive"
    np.testing.assert_allclose(unc.scale, render.scale)
    qtbot.waitUntil(lambda: not unc.data.busy and not render.data.busy, timeout=120000)
    shown = np.asarray(unc._slice.image.raw)
    assert shown.min() >= 0 and shown.max() > 0
    # computed in the render process: this (GUI) process never loaded the model's renderer
    assert not any(str(out.resolve()) == key[0] for key in lazy._CACHE)
    w.uncertainty_check.setChecked(False)  # off: the layer goes, the render stays
    assert unc not in w.viewer.layers and render in w.viewer.layers
    w.uncertainty_check.setChecked(True)  # on again: back for the last render
    assert len(w.uncertainty_layers) == 1 and w.uncertainty_layers[0] in w.viewer.layers
