"""One world (issue 21): the input layer takes the voxel size typed in the Train tab, and every
layer of the Render & Export tab (render, uncertainty, motion) shares its physical coordinates;
side by side shows input | render + motion | uncertainty, each panel the whole field of view.

One short training (a few steps of the fast engine on a small synthetic stack) serves the test.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_spatimeinr import _napari_launch as launch  # noqa: E402
from napari_spatimeinr._widgets.render import GRID_SPACER  # noqa: E402
from napari_spatimeinr._widgets.workflow import WorkflowWidget  # noqa: E402
from napari_spatimeinr.data.synthetic import make_nuclei_timelapse  # noqa: E402

pytestmark = pytest.mark.gui
SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)
TYPED = (1.0, 0.25, 0.25)  # voxel size z, y, x (µm) typed in the Train tab
INTERVAL = 20.0  # frame interval (s) typed in the Train tab


def _z_resampled(volume, layer_from, layer_to, nz):
    """``volume`` (Z, Y, X of ``layer_from``) linearly sampled at the world z of the ``nz`` voxel
    centres of ``layer_to`` (same y, x grid)."""
    z_world = layer_to.translate[1] + np.arange(nz) * layer_to.scale[1]
    zi = (z_world - layer_from.translate[1]) / layer_from.scale[1]
    lo = np.clip(np.floor(zi).astype(int), 0, volume.shape[0] - 1)
    hi = np.clip(lo + 1, 0, volume.shape[0] - 1)
    w = np.clip(zi - lo, 0.0, 1.0)[:, None, None]
    return volume[lo] * (1 - w) + volume[hi] * w


def test_one_world_train_render_side_by_side_at_1280x800(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    stack = make_nuclei_timelapse(shape=(4, 6, 32, 32), n_nuclei=4)
    inp = viewer.add_image(stack.data, name="cells")  # a file without sizes: scale 1
    _, wf = viewer.window.add_plugin_dock_widget(launch.PLUGIN, "SpatimeINR")
    assert isinstance(wf, WorkflowWidget)
    launch.fit_to_screen(viewer, (1280, 800))
    tr, rd = wf.train, wf.render

    # typed in the Train tab: the input layer takes it, and the status says so
    for spin, v in zip(tr.voxel_spins, TYPED, strict=True):
        spin.setValue(v)
    tr.interval_spin.setValue(INTERVAL)
    qtbot.waitUntil(lambda: tuple(inp.scale) == pytest.approx((INTERVAL, *TYPED)), timeout=5000)
    assert "'cells' now has these sizes (1 × 0.25 × 0.25 µm, 20 s per frame)" in tr.status.text()

    tr.steps_spin.setValue(3)
    tr.preview_check.setChecked(False)
    for name, v in SMALL.items():
        tr.advanced.set_value(name, v)
    tr.out_edit.setText(str(tmp_path / "cells.spatimeinr"))
    tr._out_auto = False
    assert tr.validate(), tr.error_label.text()
    with qtbot.waitSignal(tr.model_ready, timeout=240_000):
        tr.start()
    assert wf.tabs.currentWidget() is rd

    rd.iso_btn.click()  # z × 4: cubic voxels of 0.25 µm
    rd.scale_t.setValue(2.0)
    rd.uncertainty_check.setChecked(True)
    render = rd.add_layer()
    assert render is not None, rd.error_label.text()
    assert rd.uncertainty_layers == []  # one layer per turn of the event loop: it comes next
    qtbot.waitUntil(lambda: len(rd.uncertainty_layers) == 1, timeout=5000)
    [unc] = rd.uncertainty_layers
    rd.motion_check.setChecked(True)
    motion = rd.motion.layer
    rd.grid_btn.click()  # spacers first, one per turn, then the grid
    qtbot.waitUntil(lambda: rd.grid().enabled, timeout=5000)
    assert len([ly for ly in viewer.layers if ly.name == "cells"]) == 1  # no second input layer

    # one world: the render spans the input's z, y, x extent within one input voxel
    np.testing.assert_allclose(render.scale, (INTERVAL / 2, 0.25, 0.25, 0.25))
    ext_in, ext_r = inp.extent.world, render.extent.world
    for axis, voxel in zip((1, 2, 3), TYPED, strict=True):
        assert abs(ext_r[0][axis] - ext_in[0][axis]) <= voxel, (axis, ext_in, ext_r)
        assert abs(ext_r[1][axis] - ext_in[1][axis]) <= voxel, (axis, ext_in, ext_r)
    np.testing.assert_allclose(unc.scale, render.scale)
    np.testing.assert_allclose(unc.translate, render.translate)
    np.testing.assert_allclose(motion.scale, inp.scale[1:])
    np.testing.assert_allclose(motion.translate, inp.translate[1:])

    # a measured frame of the render, sampled at the input's voxel centres, is that frame
    t_in = 1
    t_r = int(round((inp.translate[0] + t_in * INTERVAL - render.translate[0]) / render.scale[0]))
    assert render.translate[0] + t_r * render.scale[0] == pytest.approx(t_in * INTERVAL)
    frame = np.asarray(render.data.dask[t_r].compute(), np.float64)
    sampled = _z_resampled(frame, render, inp, inp.data.shape[1])
    r = np.corrcoef(sampled.ravel(), np.asarray(inp.data[t_in], np.float64).ravel())[0, 1]
    assert r >= 0.8, r

    # the time under the slider, in seconds, and whether a measured frame is in view
    viewer.dims.set_point(0, t_in * INTERVAL)
    assert viewer.text_overlay.visible
    assert viewer.text_overlay.text == f"t = {t_in * INTERVAL:g} s · measured frame {t_in}"
    viewer.dims.set_point(0, (t_in + 0.5) * INTERVAL)
    assert f"rendered, 0.50 of frame {t_in} → {t_in + 1}" in viewer.text_overlay.text

    # side by side: input | render + motion | uncertainty; spacers are hidden, nothing else shows
    grid, layers = rd.grid(), list(viewer.layers)
    cell = {ly.name: grid.position(i, layers) for i, ly in enumerate(layers)}
    assert grid.actual_shape(layers) == (1, 3)
    assert cell["cells"] == (0, 0)
    assert cell[render.name] == cell[motion.name] == (0, 1)
    assert cell[unc.name] == (0, 2)
    spacers = [ly for ly in layers if ly.metadata.get(GRID_SPACER)]
    assert spacers and all(not ly.visible for ly in spacers)
    # the camera shows the whole y-x field of view in each panel
    qtbot.wait(50)
    h, w = rd._view_box_world()[1] - rd._view_box_world()[0]
    assert h * 3 >= ext_in[1][2] - ext_in[0][2] and w >= ext_in[1][3] - ext_in[0][3]

    rd.grid_btn.click()  # back to one overlay: the arrows stay over the render
    assert not rd.grid().enabled
    assert not [ly for ly in viewer.layers if ly.metadata.get(GRID_SPACER)]
    assert motion in viewer.layers and motion.visible
    names = [ly.name for ly in viewer.layers]
    assert names.index(motion.name) > names.index(render.name)
    # Input ⇄ render: the render (and its uncertainty) hidden to see the input in place, and back
    assert rd.flip() is False and not render.visible and not unc.visible and inp.visible
    assert "input" in rd.status.text()
    assert rd.flip() is True and render.visible and unc.visible
    for ly in (render, unc):
        ly.data.wait_idle()


def test_time_readout_names_measured_and_rendered_instants():
    from napari_spatimeinr._widgets.time_readout import describe_time

    assert describe_time(45.0, 5.0, 4.0, 12) == "t = 45 s · measured frame 10"
    assert describe_time(47.0, 5.0, 4.0, 12) == "t = 47 s · rendered, 0.50 of frame 10 → 11"
    assert describe_time(49.0, 5.0, 4.0, 12) == "t = 49 s · measured frame 11"
    assert describe_time(60.0, 5.0, 4.0, 12) == "t = 60 s"  # outside the measured frames
