"""Hold-out protocol: degradation, the grid convention, the report contract, stop, errors."""

import json

import numpy as np
import pytest

from napari_spatimeinr.core.coords import make_grid
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.core.progress import Progress
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.workflows.evaluate.baselines import interpolate
from napari_spatimeinr.workflows.evaluate.metrics import score, truth_range
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult, run_evaluation
from napari_spatimeinr.workflows.evaluate.report import format_table, read_report, write_report
from napari_spatimeinr.workflows.evaluate.withhold import (
    degrade,
    degrade_spatial,
    degrade_temporal,
    plan_shapes,
)

REPORT_KEYS = {"task", "factor", "z_only", "input_shape", "truth_shape", "results"}
RESULT_KEYS = {"psnr", "ssim", "per_frame", "train_seconds"}


def make_stack(shape, seed=0):
    from conftest import smooth_random

    return Stack4D(
        smooth_random(shape, seed=seed),
        voxel_size=(2.0, 0.5, 0.25),
        frame_interval=10.0,
        name="syn",
    )


def final(items):
    results = [i for i in items if isinstance(i, EvalResult)]
    assert all(isinstance(i, Progress) for i in items if not isinstance(i, EvalResult))
    return results[-1] if results else None


# -- degradation -------------------------------------------------------------------------------
def test_temporal_keeps_every_kth_frame_and_scores_only_the_others():
    st = make_stack((11, 2, 8, 8))
    d = degrade_temporal(st, 4)
    # kept 0, 4, 8; frames 9 and 10 lie after the last kept one and are dropped
    np.testing.assert_array_equal(d.input.data, st.data[[0, 4, 8]])
    np.testing.assert_array_equal(d.truth, st.data[:9])
    assert d.scored.tolist() == [1, 2, 3, 5, 6, 7]
    assert d.input.frame_interval == 40.0 and d.input.voxel_size == st.voxel_size
    assert d.truth_scale == (10.0, 2.0, 0.5, 0.25) and d.input_scale == (40.0, 2.0, 0.5, 0.25)
    # rendering the input at x4 gives exactly the truth's frame instants
    grid = make_grid(d.input.shape, d.scale_t, d.scale_zyx)
    np.testing.assert_allclose(grid.t * 4, np.arange(9))


def test_spatial_mean_pools_after_cropping():
    st = make_stack((2, 5, 9, 8))
    d = degrade_spatial(st, 2)
    assert d.pooled_axes == "zyx"
    assert d.truth.shape == (2, 4, 8, 8) and d.input.shape == (2, 2, 4, 4)
    # one pooled voxel by hand
    block = st.data[1, 2:4, 4:6, 6:8]
    assert d.input.data[1, 1, 2, 3] == pytest.approx(block.mean(), rel=1e-6)
    assert d.input.voxel_size == (4.0, 1.0, 0.5)
    assert d.scored.tolist() == [0, 1]
    # napari: the pooled voxel centre is half a pooled voxel minus half an original one inside
    assert d.input_translate == pytest.approx((0.0, 1.0, 0.25, 0.125))
    z = degrade_spatial(st, 2, z_only=True)
    assert z.pooled_axes == "z" and z.input.shape == (2, 2, 9, 8) and z.scale_zyx == (2, 1, 1)
    flat = degrade_spatial(make_stack((1, 1, 12, 10)), 2)  # Z = 1: pool y and x
    assert flat.pooled_axes == "yx" and flat.input.shape == (1, 1, 6, 5)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_pool_then_render_puts_output_centres_on_original_centres(k):
    # coords.py: output voxel j of a xk render of n pooled voxels sits at pooled coordinate
    # (j + 0.5)/k - 0.5; pooled voxel p is centred on original coordinate k p + (k - 1)/2.
    n_orig = 5 * k
    grid = make_grid((1, 5, 5, 5), 1.0, (k, k, k))
    for axis in grid.axes[1:]:
        np.testing.assert_allclose(k * axis + (k - 1) / 2, np.arange(n_orig), atol=1e-12)
    # consequence: a field linear in z, y, x is recovered exactly (away from the clamped edges)
    zz, yy, xx = np.meshgrid(*(np.arange(n_orig),) * 3, indexing="ij")
    st = Stack4D((3 * zz - 2 * yy + 0.5 * xx + 100.0)[None].astype(np.float32))
    d = degrade_spatial(st, k)
    got = interpolate(d.input.data, d.scale_t, d.scale_zyx, "linear")
    inner = (slice(None), *(slice(k, n_orig - k),) * 3)
    np.testing.assert_allclose(got[inner], d.truth[inner], atol=1e-3)


@pytest.mark.parametrize(
    "shape,task,factor,z_only,match",
    [
        ((4, 1, 8, 8), "temporal", 4, False, "at least 5 frames"),
        ((1, 8, 8, 8), "temporal", 2, False, "single time point"),
        ((6, 8, 8, 8), "temporal", 2, True, "spatial task only"),
        ((6, 1, 8, 8), "spatial", 2, True, "single z slice"),
        ((1, 3, 16, 16), "spatial", 2, False, "Z by 2"),
        ((6, 4, 8, 8), "spatial", 1, False, "integer >= 2"),
        ((6, 4, 8, 8), "spatial", 2.5, False, "integer >= 2"),
        ((6, 4, 8, 8), "sideways", 2, False, "Unknown task"),
    ],
)
def test_impossible_requests_are_refused_clearly(shape, task, factor, z_only, match):
    with pytest.raises(SpatimeINRError, match=match):
        degrade(make_stack(shape), task, factor, z_only)


@pytest.mark.parametrize(
    "shape,task,factor,z_only",
    [
        ((11, 2, 8, 8), "temporal", 4, False),
        ((6, 1, 8, 8), "temporal", 2, False),
        ((2, 9, 13, 10), "spatial", 2, False),
        ((2, 9, 13, 10), "spatial", 3, True),
        ((3, 1, 13, 10), "spatial", 2, False),
    ],
)
def test_plan_shapes_matches_degrade(shape, task, factor, z_only):
    d = degrade(make_stack(shape), task, factor, z_only)
    assert plan_shapes(shape, task, factor, z_only) == (d.input.shape, d.truth.shape, d.scored.size)


def test_plan_shapes_refuses_like_degrade():
    with pytest.raises(SpatimeINRError, match="at least 5 frames"):
        plan_shapes((4, 1, 8, 8), "temporal", 4)
    with pytest.raises(SpatimeINRError, match="single z slice"):
        plan_shapes((4, 1, 8, 8), "spatial", 2, True)


# -- run_evaluation ----------------------------------------------------------------------------
def test_temporal_run_report_contract(tmp_path):
    st = make_stack((7, 2, 16, 16))
    items = list(run_evaluation(st, "temporal", 2, method="linear"))
    res = final(items)
    assert res is not None and isinstance(items[-1], EvalResult)
    rep = res.report
    assert REPORT_KEYS <= set(rep)
    assert rep["task"] == "temporal" and rep["factor"] == 2 and rep["z_only"] is False
    assert rep["input_shape"] == [4, 2, 16, 16] and rep["truth_shape"] == [7, 2, 16, 16]
    assert list(rep["results"]) == ["linear", "nearest", "cubic", "motion", "smoothed"]
    for entry in rep["results"].values():
        assert RESULT_KEYS <= set(entry)
        assert [f["t"] for f in entry["per_frame"]] == [1, 3, 5]  # withheld frames only
        assert all(set(f) == {"t", "psnr", "ssim"} for f in entry["per_frame"])
    assert rep["results"]["smoothed"]["base"] in ("nearest", "linear", "cubic", "motion")
    assert rep["results"]["smoothed"]["sigma"] in (0.5, 1.0, 1.5, 2.0)
    # the evaluated method (through train + render) scores like the direct baseline
    lo, hi = truth_range(res.truth[[1, 3, 5]])
    direct = score(interpolate(res.input, 2, (1, 1, 1), "linear"), res.truth, [1, 3, 5], lo, hi)
    assert rep["results"]["linear"]["psnr"] == pytest.approx(direct["psnr"], abs=1e-3)
    # arrays for the QC widget: truth grid, input grid, one reconstruction per method
    assert res.truth.shape == (7, 2, 16, 16) and res.input.shape == (4, 2, 16, 16)
    assert set(res.reconstructions) == set(rep["results"])
    assert res.error().shape == res.truth.shape
    assert res.truth_scale == (10.0, 2.0, 0.5, 0.25) and res.input_scale[0] == 20.0
    json.dumps(rep, allow_nan=False)  # plain JSON already


def test_spatial_z_only_run_with_a_baseline_subset():
    st = make_stack((2, 8, 12, 12))
    res = final(
        list(run_evaluation(st, "spatial", 2, z_only=True, method="cubic", baselines=["linear"]))
    )
    rep = res.report
    assert rep["z_only"] is True and rep["pooled_axes"] == "z"
    assert list(rep["results"]) == ["cubic", "linear"]
    assert rep["input_shape"] == [2, 4, 12, 12] and rep["truth_shape"] == [2, 8, 12, 12]
    assert [f["t"] for f in rep["results"]["cubic"]["per_frame"]] == [0, 1]
    assert rep["best_baseline"] == "linear"


def test_motion_is_a_temporal_baseline_only():
    with pytest.raises(SpatimeINRError, match="motion"):
        list(
            run_evaluation(
                make_stack((1, 8, 8, 8)), "spatial", 2, method="linear", baselines=["motion"]
            )
        )
    with pytest.raises(SpatimeINRError, match="Unknown method"):
        list(run_evaluation(make_stack((5, 1, 8, 8)), "temporal", 2, method="bicubic"))


def test_stop_returns_without_a_result():
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 2

    items = list(
        run_evaluation(make_stack((5, 1, 16, 16)), "temporal", 2, method="linear", stop=stop)
    )
    assert final(items) is None


def test_spatimeinr_method_with_a_few_steps(tmp_path):
    pytest.importorskip("napari_spatimeinr.engines.spatimeinr")
    st = make_stack((5, 2, 16, 16))
    res = final(
        list(
            run_evaluation(
                st,
                "temporal",
                2,
                method="spatimeinr",
                steps=3,
                baselines=["cubic"],
                work_dir=tmp_path,
                device="cpu",
            )
        )
    )
    assert list(res.report["results"]) == ["spatimeinr", "cubic"]
    assert res.report["preset"] == "fast"
    assert (tmp_path / "model" / "config.yaml").is_file()


def test_params_override_the_preset(tmp_path):
    pytest.importorskip("napari_spatimeinr.engines.spatimeinr")
    from napari_spatimeinr.store.model_dir import ModelDir

    small = {"latent_dim": 4, "encoder_features": 4, "mlp_width": 8, "mlp_depth": 1}
    res = final(
        list(
            run_evaluation(
                make_stack((5, 2, 16, 16)),
                "temporal",
                2,
                preset="paper",
                params={**small, "batch_size": 16, "hypercube_n": 1},
                steps=2,
                baselines=["linear"],
                work_dir=tmp_path,
                device="cpu",
            )
        )
    )
    assert res.report["preset"] == "paper"
    used = ModelDir(tmp_path / "model").meta["params"]
    assert {k: used[k] for k in small} == small


# -- report files ------------------------------------------------------------------------------
def test_write_report_json_csv_png_and_table(tmp_path):
    res = final(list(run_evaluation(make_stack((5, 1, 16, 16)), "temporal", 2, method="linear")))
    rep = res.report
    rep["results"]["nearest"]["per_frame"][0]["psnr"] = float("inf")  # JSON has no inf
    pj, pc, pp = write_report(rep, tmp_path / "run.json")
    assert (pc.name, pp.name) == ("run.csv", "run.png")
    back = read_report(pj)
    assert REPORT_KEYS <= set(back)
    assert back["results"]["nearest"]["per_frame"][0]["psnr"] is None
    lines = pc.read_text().splitlines()
    assert lines[0] == "method,t,psnr,ssim"
    assert len(lines) - 1 == sum(len(e["per_frame"]) for e in rep["results"].values())
    assert lines[1].startswith("linear,1,")
    assert pp.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(rep)
    for name in rep["results"]:
        assert name in table
    assert "evaluated" in table and "best baseline" in table
    with pytest.raises(SpatimeINRError, match="does not exist"):
        write_report(rep, tmp_path / "missing" / "run.json")


def test_single_frame_report_plots_bars(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from napari_spatimeinr.workflows.evaluate.report import plot_report

    res = final(list(run_evaluation(make_stack((1, 8, 12, 12)), "spatial", 2, method="linear")))
    fig = Figure()
    ax = fig.add_subplot(111)
    plot_report(res.report, ax)
    assert len(ax.patches) == len(res.report["results"])  # one bar per method
    pj, _, pp = write_report(res.report, tmp_path / "vol")  # no .json suffix: siblings still
    assert pj.name == "vol" and pp.name == "vol.png" and pp.stat().st_size > 0
    assert (pp.stat().st_mode & 0o777) == 0o644
