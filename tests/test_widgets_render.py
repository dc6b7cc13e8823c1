"""Render & Export widget: regions, time range, overwrite question, Cancel leaves no file, the
uncertainty map shown and exported beside the render (and in the copied command)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import smooth_random  # noqa: E402
from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr._widgets.render import ROI_VIEW, RenderWidget  # noqa: E402
from napari_spatimeinr.data.stack import Stack4D  # noqa: E402

pytestmark = pytest.mark.gui
SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    """A fast SpatimeINR model (it makes uncertainty maps) of the conftest's small stack, trained
    for 3 steps, shared by this module's uncertainty tests."""
    stack = Stack4D(
        smooth_random((6, 5, 24, 20)),
        voxel_size=(1.0, 0.2, 0.2),
        frame_interval=30.0,
        name="tiny",
        source_axes="TZYX",
    )
    out = tmp_path_factory.mktemp("fast") / "fast.spatimeinr"
    list(api.train(stack, out, {"steps": 3, "device": "cpu", "params": SMALL}))
    return out


@pytest.fixture
def fast_widget(make_napari_viewer, qtbot, fast_model):
    w = RenderWidget(make_napari_viewer())
    qtbot.addWidget(w)
    w.add_model(fast_model)
    return w


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
    assert "on disk" in w.output_info.text() and "measuring" in w.output_info.text()
    layer = w.add_layer()
    assert layer.name == "tiny · linear z×2 (computing…)"  # the slice in view is on its way
    assert layer.data.shape == (6, 10, 24, 20)
    qtbot.waitUntil(lambda: not layer.data.busy, timeout=60_000)
    assert layer.name == "tiny · linear z×2"
    qtbot.waitUntil(lambda: "export ≈" in w.output_info.text(), timeout=60_000)  # measured
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
    fast_widget, fast_model, qtbot
):
    from napari_spatimeinr._widgets.async_layer import AsyncArray
    from napari_spatimeinr.render import lazy

    w, out = fast_widget, fast_model
    w.scale_t.setValue(2.0)
    lazy.clear_renderer_cache()
    w.uncertainty_check.setChecked(True)  # no render layer yet: nothing to add
    assert w.uncertainty_layers == []
    render = w.add_layer()
    qtbot.waitUntil(lambda: len(w.uncertainty_layers) == 1, timeout=5000)  # the next turn
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


def _tiff_meta(path):
    """(shape, axes, ImageJ metadata without the provenance, provenance, resolution) of a TIFF."""
    import json

    import tifffile

    with tifffile.TiffFile(path) as f:
        meta = dict(f.imagej_metadata)
        prov = json.loads(meta.pop("Info"))["spatimeinr"]
        return f.series[0].shape, f.series[0].axes, meta, prov, f.pages[0].resolution


def test_export_writes_the_uncertainty_beside_the_render_as_the_cli_does(
    fast_widget, qtbot, tmp_path
):
    """Issue 16: "with uncertainty" (export) writes NAME_uncertainty.tif beside the render (same
    grid, axes, metadata, provenance); an existing map is asked about like the render; the copied
    command, run by the CLI, writes the same two files."""
    import shlex

    import tifffile

    from napari_spatimeinr.cli import build_parser, main

    w = fast_widget
    w.scale_t.setValue(2.0)
    w.scale_z.setValue(1.5)
    out, unc = tmp_path / "out.tif", tmp_path / "out_uncertainty.tif"
    w.path_edit.setText(str(out))
    assert w.export_unc_check.isEnabled() and not w.export_unc_check.isChecked()
    w.export_unc_check.setChecked(True)
    assert "(uncertainty)" in w.output_info.text()  # its size is counted
    unc.write_bytes(b"old")  # an existing map is never replaced without asking
    asked = []
    w.confirm_overwrite = lambda p: asked.append(p) or False
    assert not w.export()
    assert asked == [unc] and unc.read_bytes() == b"old" and not out.exists()
    w.confirm_overwrite = lambda p: asked.append(p) or True
    with qtbot.waitSignal(w.export_done, timeout=120_000) as done:
        assert w.export()
    assert done.args[0] == str(out), w.error_label.text()
    assert w.last_uncertainty_export == unc and "out_uncertainty.tif" in w.status.text()
    shape, axes, meta, prov, res = _tiff_meta(out)
    u_shape, u_axes, u_meta, u_prov, u_res = _tiff_meta(unc)
    plan = w.plan()
    assert shape == u_shape == (11, 8, 24, 20) == plan.shape and axes == u_axes
    assert meta == u_meta and res == u_res  # spacing, frame interval, units
    assert u_prov.pop("content").startswith("uncertainty")
    assert u_prov.pop("name") == prov["name"] + " uncertainty"
    assert u_prov == {k: v for k, v in prov.items() if k != "name"}
    values = tifffile.imread(unc)
    expect = api.render_plan(plan, uncertainty=True).compute()
    np.testing.assert_allclose(values.reshape(expect.shape), expect, rtol=1e-5, atol=1e-5)
    assert values.max() > 0 and not np.allclose(values.reshape(expect.shape), tifffile.imread(out))

    # the copied command holds --uncertainty and, run by the CLI, writes the same two files
    line = w.copy_command()
    argv = shlex.split(line)
    assert build_parser().parse_args(argv[1:]).uncertainty == str(unc)
    cli_out, cli_unc = tmp_path / "cli.tif", tmp_path / "cli_unc.tif"
    argv[argv.index("-o") + 1] = str(cli_out)
    argv[argv.index("--uncertainty") + 1] = str(cli_unc)
    assert main([*argv[1:], "-q"]) == 0
    for gui, cli in ((out, cli_out), (unc, cli_unc)):
        np.testing.assert_array_equal(tifffile.imread(gui), tifffile.imread(cli))
        assert _tiff_meta(gui) == _tiff_meta(cli)


def test_cancel_while_writing_the_uncertainty_keeps_only_the_complete_render(
    fast_widget, qtbot, tmp_path, monkeypatch
):
    from napari_spatimeinr._widgets import processes, render_export

    w = fast_widget
    out = tmp_path / "out.ome.tif"
    w.path_edit.setText(str(out))
    w.export_unc_check.setChecked(True)

    def steps(outputs, overwrite, *, dtype, stop):  # the user cancels once the render is written
        for item in processes.export_outputs_steps(outputs, overwrite, dtype=dtype, stop=stop):
            if item[0] == "written":
                w._cancel = True
            yield item

    monkeypatch.setattr(render_export, "export_outputs_steps", steps)  # local: in this process
    with qtbot.waitSignal(w.export_done, timeout=60_000) as done:
        assert w.export()
    assert done.args[0] == ""
    assert "out_uncertainty.ome.tif was not written (out.ome.tif was)" in w.status.text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.tif"]  # no partial file
    assert api.read(out).shape == w.plan().shape


def test_uncertainty_export_only_for_models_that_make_one_and_in_the_command_when_checked(
    widget, fast_widget, tmp_path
):
    from napari_spatimeinr.cli import build_parser
    from napari_spatimeinr.workflows.jobs import command_line

    # a linear model has no map: the box is off, greyed, and says why
    assert not widget.export_unc_check.isEnabled() and not widget.exports_uncertainty()
    assert "fast engine" in widget.export_unc_check.toolTip()
    assert not widget.uncertainty_check.isEnabled()  # "Show uncertainty" likewise
    assert "fast engine" in widget.uncertainty_check.toolTip()
    assert "--uncertainty" not in widget.copy_command()

    w = fast_widget
    assert w.uncertainty_check.isEnabled() and "Not available" not in w.uncertainty_check.toolTip()
    w.path_edit.setText(str(tmp_path / "a b.nii.gz"))
    parse = build_parser().parse_args
    assert "--uncertainty" not in w.command_argv()
    assert parse(w.command_argv()[1:]).uncertainty is None
    w.export_unc_check.setChecked(True)
    argv = w.command_argv()
    assert parse(argv[1:]).uncertainty == str(tmp_path / "a b_uncertainty.nii.gz")
    assert w.copy_command() == command_line(argv)
    script = w.job_script()
    assert command_line(argv) in script.splitlines() and "uncertainty map" in script
    w.export_unc_check.setChecked(False)
    assert "--uncertainty" not in w.copy_command() and "uncertainty map" not in w.job_script()


def test_default_export_name_of_a_stack_named_like_a_path(make_napari_viewer, qtbot, tmp_path):
    """A model of "movie t/4" (what `evaluate` names its input) gets a file beside it, not a path
    into a folder "movie t" that does not exist; spaces stay."""
    from napari_spatimeinr._widgets.forms import file_stem

    assert file_stem('a/b\\c:d*e?f"g<h>i|j') == "a_b_c_d_e_f_g_h_i_j"
    assert file_stem("movie t/4") == "movie t_4" and file_stem(" /. ") == "_"
    assert file_stem("..") == "render"
    stack = Stack4D(smooth_random((3, 1, 8, 8)), name="movie t/4", source_axes="TZYX")
    out = tmp_path / "m.spatimeinr"
    list(api.train(stack, out, {"method": "linear"}))
    w = RenderWidget(make_napari_viewer())
    qtbot.addWidget(w)
    w.path_edit.clear()  # models of earlier tests are in the session's list: no name chosen yet
    w.add_model(out)
    assert w.export_path() == tmp_path / "movie t_4_render.tif"


def test_export_estimate_comes_from_timed_chunks_of_the_plan(widget, qtbot, monkeypatch):
    """Issue 21: the time shown before Export is measured for this plan in the background (two
    export chunks timed in the render process: the first in a fresh renderer, the model's load;
    the second warm, the speed), plus a child process's start-up; slices shown do not count."""
    from napari_spatimeinr._widgets import processes

    asked = []

    def timed(parts, cold_model=None):
        asked.append((len(parts), cold_model))
        return [(3.0, 1000), (1.0, 1000)]  # cold: 2 s of loading; warm: 1000 voxels/s

    monkeypatch.setattr(processes, "time_blocks", timed)
    monkeypatch.setattr(processes, "STARTUP_S", 4.0)
    w = widget
    w.scale_t.setValue(2.0)
    w.scale_z.setValue(1.0)
    w.update_info()
    plan = w.plan()
    assert w.export_estimate(plan) is None and "measuring" in w.output_info.text()
    with qtbot.waitSignal(w.estimate_ready, timeout=30_000):
        pass
    n = int(np.prod(plan.shape))
    assert w.export_estimate(plan) == pytest.approx(4.0 + 2.0 + n / 1000)
    assert w.export_estimate(plan, files=2) == pytest.approx(4.0 + 2.0 + 2 * n / 1000)
    assert "export ≈" in w.output_info.text()
    model = str(api.open_model(w.model_combo.currentData()).path.resolve())
    assert asked == [(2, model)]  # the first measurement of a model loads it afresh
    w.scale_t.setValue(3.0)  # another plan: measured again, the model's load is known
    with qtbot.waitSignal(w.estimate_ready, timeout=30_000):
        pass
    assert asked == [(2, model), (2, None)]


def test_export_estimate_is_within_2x_of_the_real_export(fast_widget, qtbot, tmp_path):
    w = fast_widget
    w.scale_t.setValue(4.0)
    w.scale_z.setValue(2.0)
    w.path_edit.setText(str(tmp_path / "timed.tif"))
    qtbot.waitUntil(lambda: "export ≈" in w.output_info.text(), timeout=120_000)
    estimate = w.export_estimate(w.plan())
    with qtbot.waitSignal(w.export_done, timeout=120_000) as done:
        assert w.export()
    assert done.args[0], w.error_label.text()
    real = w.last_export_seconds
    print(f"export estimate {estimate:.2f} s, real {real:.2f} s")
    assert estimate / 2 <= real <= 2 * estimate, (estimate, real)


def test_the_widget_refuses_what_the_cli_refuses(fast_widget, tmp_path, monkeypatch):
    """Add layer / Export go through the CLI's gate (limits.check_render_export): the widget used
    to build its own cost, without the model's stored input, and allowed exports the CLI refused."""
    from napari_spatimeinr import limits
    from napari_spatimeinr.cli import main
    from napari_spatimeinr.core import resources

    w = fast_widget
    out = tmp_path / "out.ome.tif"
    w.path_edit.setText(str(out))
    for spin in (w.scale_t, w.scale_z, w.scale_y, w.scale_x):
        spin.setValue(1.0)
    plan = w.plan()
    cost = limits.render_cost(plan._input_shape)
    model_bytes = limits.renderer_bytes(plan._input_shape)
    assert model_bytes > 0
    # memory for the render and its renderer (a few frames, not the whole input)
    monkeypatch.setattr(resources, "memory_margin", lambda: 0)
    monkeypatch.setattr(resources, "available_memory", lambda: cost.peak_bytes(model_bytes) - 1)
    assert cost.peak_bytes(0) <= resources.memory_limit()
    code = main(["render", str(plan.model_dir), "-o", str(out)])
    assert code != 0 and not out.exists()
    view, export = w.refusals(plan)
    assert "Not enough memory" in export
    monkeypatch.setattr(resources, "available_memory", lambda: cost.peak_bytes(model_bytes) + 1)
    assert w.refusals(plan)[1] == ""
