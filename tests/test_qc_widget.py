"""The QC dock widget: runs the hold-out check in a worker, shows table/plot, adds layers."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    from napari_spatimeinr._widgets.qc import QCWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    from scipy import ndimage

    data = ndimage.gaussian_filter(rng.random((7, 3, 24, 20)), 1.5).astype(np.float32) * 1000
    viewer.add_image(
        data,
        name="cells",
        scale=(5.0, 2.0, 0.5, 0.5),
        translate=(0, 1, 2, 3),
        units=("s", "µm", "µm", "µm"),
    )
    widget = QCWidget(viewer)
    return viewer, widget


def wait_done(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_temporal_check_fills_table_plot_layers_and_saves(qtbot, viewer_and_widget, tmp_path):
    viewer, w = viewer_and_widget
    assert w.layer_combo.currentText() == "cells" and w.axes_edit.text() == "TZYX"
    w.task_combo.setCurrentText("temporal")
    w.factor_spin.setValue(2)
    w.method_combo.setCurrentText("linear")
    assert w.run_button.isEnabled()
    assert "no training" in w.engine_info.text()
    assert not w.canvas.isVisibleTo(w) and not w.table.isVisibleTo(w)  # no empty plot or table
    assert "scored" in w.plan_label.text()
    w.run_button.click()
    wait_done(qtbot, w)
    res = w.result
    assert res is not None, w.status_label.text()
    assert w.canvas.isVisibleTo(w) and w.table.isVisibleTo(w)
    rep = res.report
    names = [w.table.item(r, 0).text() for r in range(w.table.rowCount())]
    assert names == list(rep["results"]) == ["linear", "nearest", "cubic", "motion", "smoothed"]
    assert w.table.item(0, 1).text() == f"{rep['results']['linear']['psnr']:.2f}"
    # plot: the method against cubic (and the best baseline)
    labels = [ln.get_label() for ln in w.figure.axes[0].get_lines()]
    assert labels[:2] == ["linear", "cubic"]
    # layers at the input's physical scale, same first sample
    truth = viewer.layers["cells QC truth (temporal ×2)"]
    recon = viewer.layers["cells QC linear (temporal ×2)"]
    err = viewer.layers["cells QC |error| linear (temporal ×2)"]
    for ly in (truth, recon, err):
        assert tuple(ly.scale) == (5.0, 2.0, 0.5, 0.5)
        assert tuple(ly.translate) == (0, 1, 2, 3)
        assert ly.data.shape == (7, 3, 24, 20)
        assert tuple(ly.units) == tuple(viewer.layers["cells"].units)  # no "inconsistent units"
    np.testing.assert_allclose(err.data, np.abs(recon.data - truth.data))
    np.testing.assert_array_equal(truth.data, viewer.layers["cells"].data)
    # saving
    pj, pc, pp = w.save_report(tmp_path / "qc.json")
    assert json.loads(pj.read_text())["task"] == "temporal"
    assert pc.is_file() and pp.is_file()
    # running again updates the same layers instead of adding new ones
    n_layers = len(viewer.layers)
    w.run_button.click()
    wait_done(qtbot, w)
    assert len(viewer.layers) == n_layers


def test_a_3d_time_lapse_layer_keeps_its_axes(qtbot, make_napari_viewer):
    from napari_spatimeinr._widgets.qc import QCWidget

    viewer = make_napari_viewer()
    data = np.random.default_rng(1).random((5, 16, 18)).astype(np.float32)
    viewer.add_image(data, name="movie", scale=(3.0, 0.2, 0.2))
    w = QCWidget(viewer)
    w.task_combo.setCurrentText("temporal")
    assert w.axes_edit.text() == "TYX"
    w.factor_spin.setValue(2)
    w.method_combo.setCurrentText("nearest")
    w.run()
    wait_done(qtbot, w)
    recon = viewer.layers["movie QC nearest (temporal ×2)"]
    assert recon.data.shape == (5, 16, 18) and tuple(recon.scale) == (3.0, 0.2, 0.2)
    # kept frames come back (up to float rounding of the normalization)
    np.testing.assert_allclose(recon.data[::2], data[::2], rtol=1e-5, atol=1e-6)


def test_axes_come_from_plugin_metadata_or_axis_labels(make_napari_viewer):
    from napari_spatimeinr._widgets.qc import QCWidget, layer_axes, layer_to_stack

    viewer = make_napari_viewer()
    data = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    meta = {"spatimeinr": {"axes": "ZYX", "source_path": "/data/v.tif", "source_sha256": "ab"}}
    a = viewer.add_image(data, name="a", metadata=meta)
    b = viewer.add_image(data, name="b", axis_labels=("t", "y", "x"))
    c = viewer.add_image(data, name="c")
    assert layer_axes(a, "temporal") == "ZYX"
    assert layer_axes(b, "spatial") == "TYX"
    assert layer_axes(c, "spatial") == "ZYX" and layer_axes(c, "temporal") == "TYX"
    st = layer_to_stack(a, "ZYX")
    assert st.shape == (1, 4, 6, 8) and st.source_sha256 == "ab" and st.name == "a"
    w = QCWidget(viewer)
    w.layer_combo.setCurrentText("a")
    assert w.axes_edit.text() == "ZYX"


def test_impossible_requests_disable_run(viewer_and_widget):
    _, w = viewer_and_widget
    w.task_combo.setCurrentText("temporal")
    w.factor_spin.setValue(8)  # 7 frames: no two kept frames 8 apart
    assert not w.run_button.isEnabled()
    assert "frames" in w.plan_label.text()
    w.task_combo.setCurrentText("spatial")
    w.factor_spin.setValue(2)
    assert not w.z_only_check.isChecked() and w.z_only_check.isEnabled()
    w.z_only_check.setChecked(True)  # Z = 3: cannot pool z by 2 into two slices
    assert not w.run_button.isEnabled()
    w.z_only_check.setChecked(False)
    w.axes_edit.setText("TCYX")  # a channel axis: every channel is checked (issue 23)
    w._axes_edited("TCYX")
    assert w.run_button.isEnabled(), w.plan_label.text()
    w.axes_edit.setText("TTYX")
    w._axes_edited("TTYX")
    assert not w.run_button.isEnabled() and "axes" in w.plan_label.text()


def test_stop_ends_the_worker_without_a_result(qtbot, viewer_and_widget, monkeypatch):
    import time

    from napari_spatimeinr._widgets import qc
    from napari_spatimeinr.core.progress import Progress

    def slow_evaluation(stack, stop, **kwargs):
        for i in range(10_000):
            if stop():
                return
            time.sleep(0.01)
            yield Progress(step=i, total=10_000, message="training")

    monkeypatch.setattr(qc, "run_evaluation", slow_evaluation)
    _, w = viewer_and_widget
    w.task_combo.setCurrentText("temporal")
    w.factor_spin.setValue(2)
    w.run()
    assert w.stop_button.isEnabled() and not w.run_button.isEnabled()
    qtbot.waitUntil(lambda: w.progress.maximum() == 10_000, timeout=60_000)
    w.stop_button.click()
    wait_done(qtbot, w, timeout=60_000)
    assert w.result is None
    assert "Stopped" in w.status_label.text()
    assert w.run_button.isEnabled() and not w.save_button.isEnabled()


def test_uncertainty_plot_and_layer_beside_the_error(viewer_and_widget):
    from napari_spatimeinr.workflows.evaluate.protocol import EvalResult

    viewer, w = viewer_and_widget
    truth = viewer.layers["cells"].data
    pred = truth + 1.0
    unc = np.full(truth.shape, 0.8, np.float32)
    per_frame = [{"t": t, "mean_predicted": 0.8, "mean_abs_error": 1.0} for t in (1, 3, 5)]
    pf = [{"t": t, "psnr": 30.0, "ssim": 0.9} for t in (1, 3, 5)]
    report = {
        "task": "temporal",
        "factor": 2,
        "method": "spatimeinr",
        "scored_frames": [1, 3, 5],
        "intensity_range": [0.0, 1000.0],
        "best_baseline": "linear",
        "results": {
            name: {"psnr": 30.0, "ssim": 0.9, "per_frame": pf, "train_seconds": 1.0}
            for name in ("spatimeinr", "linear")
        },
        "uncertainty": {"spearman": 0.5, "top_decile_ratio": 2.5, "per_frame": per_frame},
    }
    res = EvalResult(report, truth, truth[::2], {"spatimeinr": pred}, uncertainty=unc)
    w.result = res
    w._axes = w.request()["axes"]  # what run() records before the worker starts
    w._show_result(res)
    assert len(w.figure.axes) == 2  # PSNR per frame, then uncertainty against error
    labels = [ln.get_label() for ln in w.figure.axes[1].get_lines()]
    assert labels == ["held-out |error|", "predicted uncertainty"]
    np.testing.assert_allclose(w.figure.axes[1].get_lines()[1].get_ydata(), [0.8] * 3)
    layer = viewer.layers["cells QC uncertainty spatimeinr (temporal ×2)"]
    assert layer.data.shape == truth.shape
    assert tuple(layer.scale) == tuple(
        viewer.layers["cells QC |error| spatimeinr (temporal ×2)"].scale
    )


def test_train_and_qc_read_a_layer_the_same_way(make_napari_viewer, qtbot):
    """One layer -> stack conversion for the widgets: Train and QC agree on sizes, origin, data
    (they had two, which placed the same layer differently)."""
    from napari_spatimeinr._widgets import qc
    from napari_spatimeinr._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    data = np.random.default_rng(2).random((4, 5, 12, 10)).astype(np.float32)
    layer = viewer.add_image(
        data, name="cells", scale=(30.0, 2.0, 0.5, 0.5), translate=(60.0, 4.0, 1.0, 1.5)
    )
    train = TrainWidget(viewer)
    qtbot.addWidget(train)
    a, b = train.stack(), qc.layer_to_stack(layer, "TZYX")
    assert a.voxel_size == b.voxel_size == (2.0, 0.5, 0.5)
    assert a.frame_interval == b.frame_interval == 30.0
    assert a.origin == b.origin == (60.0, 4.0, 1.0, 1.5)
    np.testing.assert_array_equal(a.data, b.data)
