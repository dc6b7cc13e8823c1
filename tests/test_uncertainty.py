"""Uncertainty maps of the fast engine: the calibrated model, where it is high, the lazy array, the
CLI file beside the render, models trained before it existed, and the evaluation report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from conftest import run_generator
from napari_spatimeinr import api
from napari_spatimeinr.cli import main
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.engines.fast import uncertainty
from napari_spatimeinr.render.lazy import clear_renderer_cache, get_renderer
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult, run_evaluation

SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)
SHAPE = (7, 1, 40, 40)
FLASH_T, FLASH_AT = 3, (28, 10)  # a blob seen in frame 3 only: nothing predicts it


def _blob(center, shape=(40, 40), s=2.5, amp=1.0):
    yy, xx = np.indices(shape, dtype=np.float32)
    d2 = (yy - center[0]) ** 2 + (xx - center[1]) ** 2
    return (amp * np.exp(-d2 / (2 * s * s))).astype(np.float32)


def _event_stack(seed: int = 0) -> Stack4D:
    """A blob moving along x by 2 px per frame, noise, and a blob that flashes in one frame."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(SHAPE[0]):
        f = _blob((12, 8 + 2 * t))
        if t == FLASH_T:
            f = f + _blob(FLASH_AT)
        frames.append(f[None])
    data = 100 + 400 * np.stack(frames) + 4 * rng.standard_normal(SHAPE)
    return Stack4D(data.astype(np.float32), voxel_size=(1.0, 0.5, 0.5), frame_interval=10.0)


@pytest.fixture(scope="module")
def event_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("unc") / "event.spatimeinr"
    run_generator(
        api.train(_event_stack(), path, {"steps": 20, "device": "cpu", "params": SMALL, "seed": 0})
    )
    return path


def test_training_writes_a_sane_monotone_calibration(event_model):
    cal = uncertainty.load(event_model / uncertainty.UNCERTAINTY_FILE)
    assert cal is not None and cal.source == "training"
    assert cal.fit["frames"] == SHAPE[0] - 2  # every inner frame predicted from its neighbours
    assert all(w >= 0 for w in cal.weights) and any(w > 0 for w in cal.weights)
    assert cal.scale > 0 and uncertainty.POWER_RANGE[0] <= cal.power <= uncertainty.POWER_RANGE[1]
    # monotone: more of any feature never predicts less error
    rng = np.random.default_rng(1)
    feats = rng.random((len(uncertainty.FEATURES), 50)).astype(np.float32)
    base = cal.predict(feats)
    for k in range(len(uncertainty.FEATURES)):
        more = feats.copy()
        more[k] *= 2.0
        assert np.all(cal.predict(more) >= base - 1e-7)


def test_unpredictable_event_gets_high_uncertainty(event_model):
    render, unc = api.render(event_model, scale_t=2.0, uncertainty=True, device="cpu")
    assert unc.shape == render.shape and unc.chunks == render.chunks and unc.dtype == np.float32
    u = unc.compute()
    assert np.all(u >= 0) and np.all(np.isfinite(u))
    y, x = FLASH_AT
    at_flash = u[2 * FLASH_T - 1, 0, y - 3 : y + 4, x - 3 : x + 4].mean()  # instant 2.5
    away_in_time = u[1, 0, y - 3 : y + 4, x - 3 : x + 4].mean()  # instant 0.5: nothing happens
    still_corner = u[2 * FLASH_T - 1, 0, 30:38, 30:38].mean()  # same instant, empty corner
    assert at_flash > 2 * away_in_time and at_flash > 2 * still_corner
    # a measured instant carries the noise level only: less than the event half-way
    assert u[2 * FLASH_T, 0, y - 3 : y + 4, x - 3 : x + 4].mean() < at_flash


def test_model_without_calibration_file_fits_on_first_use(event_model, tmp_path):
    import shutil

    old = tmp_path / "old.spatimeinr"
    shutil.copytree(event_model, old)
    (old / uncertainty.UNCERTAINTY_FILE).unlink()  # as trained before uncertainty.json existed
    clear_renderer_cache()
    _, r = get_renderer(old, "cpu")
    cal = r.calibration()
    assert cal.source.startswith("computed on demand")
    stored = uncertainty.load(event_model / uncertainty.UNCERTAINTY_FILE)
    np.testing.assert_allclose(cal.weights, stored.weights, rtol=1e-4, atol=1e-9)
    assert not (old / uncertainty.UNCERTAINTY_FILE).exists()  # the model directory is untouched


def test_cli_writes_uncertainty_file_with_the_render_grid_and_metadata(event_model, tmp_path):
    out, unc = tmp_path / "out.tif", tmp_path / "unc.tif"
    argv = ["render", str(event_model), "-o", str(out), "--scale-t", "4", "--uncertainty", str(unc)]
    assert main([*argv, "-q"]) == 0
    with tifffile.TiffFile(out) as a, tifffile.TiffFile(unc) as b:
        assert a.series[0].shape == b.series[0].shape == ((SHAPE[0] - 1) * 4 + 1, 40, 40)
        assert a.series[0].axes == b.series[0].axes
        ma, mb = dict(a.imagej_metadata), dict(b.imagej_metadata)
        pa, pb = json.loads(ma.pop("Info"))["spatimeinr"], json.loads(mb.pop("Info"))["spatimeinr"]
        assert ma == mb  # spacing, frame interval, units, ranges
        assert pb.pop("content").startswith("uncertainty")
        assert pb.pop("name") == pa.pop("name") + " uncertainty"
        assert pa == pb  # provenance: model, source, factors, grid
        assert a.pages[0].resolution == b.pages[0].resolution
        values = b.asarray()
    assert values.dtype == np.float32 and values.min() >= 0 and values.max() > 0
    # never overwritten without --overwrite
    assert main([*argv, "-q"]) != 0
    assert main([*argv, "-q", "--overwrite"]) == 0


def test_uncertainty_refused_clearly_for_classical_models(small_stack, tmp_path, capsys):
    path = tmp_path / "lin.spatimeinr"
    list(api.train(small_stack, path, {"method": "linear"}))
    with pytest.raises(SpatimeINRError, match="fast engine"):
        api.render(path, scale_t=2.0, uncertainty=True)
    code = main(["render", str(path), "-o", str(tmp_path / "o.tif"), "--uncertainty", "u.tif"])
    assert code != 0 and "fast engine" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


def test_report_metrics_against_known_maps():
    rng = np.random.default_rng(0)
    scale = rng.random(20000) + 0.01
    err = np.abs(rng.standard_normal(20000)) * scale
    m = uncertainty.report_metrics(scale, err, scale, np.ones(20000))
    assert m["spearman"] > 0.4 and m["top_decile_ratio"] > 1.5
    assert m["trivial_spearman"]["distance"] is None  # a constant map ranks nothing
    assert m["trivial_spearman"]["intensity"] == pytest.approx(m["spearman"])
    flat = uncertainty.report_metrics(rng.random(20000), err, scale, np.ones(20000))
    assert abs(flat["spearman"]) < 0.05 and flat["top_decile_ratio"] < 1.2


def test_evaluate_report_has_the_uncertainty_entry(tmp_path):
    st = _event_stack()
    items = list(
        run_evaluation(
            Stack4D(np.concatenate([st.data, st.data[::-1]])[:9]),
            "temporal",
            2,
            method="spatimeinr",
            steps=3,
            baselines=["linear"],
            device="cpu",
        )
    )
    res = items[-1]
    assert isinstance(res, EvalResult)
    entry = res.report["uncertainty"]
    assert set(entry) >= {"spearman", "top_decile_ratio", "trivial_spearman", "per_frame"}
    assert set(entry["trivial_spearman"]) == {"intensity", "distance", "intensity_x_distance"}
    assert [r["t"] for r in entry["per_frame"]] == res.scored
    assert res.uncertainty is not None and res.uncertainty.shape == res.truth.shape
    linear = list(run_evaluation(st, "temporal", 2, method="linear", baselines=["linear"]))
    assert "uncertainty" not in linear[-1].report  # interpolation has no uncertainty map


def test_info_says_how_the_map_was_calibrated(event_model, capsys):
    assert main(["info", str(event_model)]) == 0
    assert f"calibrated on {SHAPE[0] - 2} held-out frames" in capsys.readouterr().out


def test_calibration_time_is_kept_back_by_frame_size_within_its_shares():
    from napari_spatimeinr.engines.fast.train import (
        CALIBRATION_MAX_SHARE,
        CALIBRATION_SHARE,
        calibration_reserve,
    )

    small = calibration_reserve((30, 1, 64, 64), 600.0)
    yeast = calibration_reserve((30, 17, 144, 224), 30.0)
    big = calibration_reserve((48, 56, 320, 352), 100.0)
    assert small == pytest.approx(CALIBRATION_SHARE * 600.0)  # a small frame: the share
    assert 2.0 < yeast < CALIBRATION_MAX_SHARE * 30.0  # two held-out frames: about 1.6 s measured
    assert big > calibration_reserve((48, 56, 160, 176), 100.0) > CALIBRATION_SHARE * 100.0
    assert calibration_reserve((48, 56, 320, 352), 20.0) == CALIBRATION_MAX_SHARE * 20.0


def test_training_ends_without_a_calibration_that_would_pass_the_time_limit():
    """The calibration runs only when its estimated cost fits before the deadline (a 100 × 512 ×
    512 frame takes minutes); rendering fits it on first use otherwise."""
    import time

    from napari_spatimeinr.engines.fast.train import calibration_fits, calibration_seconds

    big = (100, 100, 512, 512)
    assert calibration_seconds(big) > 100 > calibration_seconds((30, 17, 144, 224))
    assert calibration_fits(big, None)
    assert not calibration_fits(big, time.perf_counter() + 60)
    assert calibration_fits((30, 17, 144, 224), time.perf_counter() + 60)
