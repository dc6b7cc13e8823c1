"""Evaluation metrics against values computed by hand."""

import math

import numpy as np
import pytest

from napari_spatimeinr.workflows.evaluate.metrics import (
    psnr,
    score,
    ssim_slices,
    ssim_window,
    truth_range,
)

C1 = (0.01 * 1.0) ** 2  # SSIM constants for data range 1


def test_psnr_by_hand():
    truth = np.zeros((4, 5))
    assert psnr(truth + 0.1, truth) == pytest.approx(20.0)
    assert psnr(truth + 0.01, truth) == pytest.approx(40.0)
    # data range 2: (2^2)/0.01 -> 10*log10(400)
    assert psnr(truth + 0.1, truth, data_range=2.0) == pytest.approx(10 * math.log10(400))
    assert psnr(truth, truth) == math.inf


def test_truth_range_is_the_0p1_99p9_percentiles():
    # linear interpolation of percentiles: index 0.001*1000 = 1 and 0.999*1000 = 999
    assert truth_range(np.arange(1001.0)) == pytest.approx((1.0, 999.0))
    # constant data: a unit span, never a division by zero
    assert truth_range(np.full(10, 5.0)) == (5.0, 6.0)


def test_score_normalizes_and_pools_mse_over_frames():
    truth = np.full((3, 1, 8, 8), 100.0)
    truth[:, :, ::2] = 300.0
    pred = truth.copy()
    # low/high = 100/300: a raw offset of 20 is 0.1 normalized, 40 is 0.2
    pred[1] += 20.0
    pred[2] += 40.0
    pred[0] += 1000.0  # frame 0 is not scored: it must not count
    r = score(pred, truth, frames=[1, 2], low=100.0, high=300.0)
    assert [f["t"] for f in r["per_frame"]] == [1, 2]
    assert r["per_frame"][0]["psnr"] == pytest.approx(20.0)
    assert r["per_frame"][1]["psnr"] == pytest.approx(10 * math.log10(1 / 0.04))
    # overall: MSE over all scored voxels (0.01 + 0.04) / 2, not the mean of per-frame PSNRs
    assert r["psnr"] == pytest.approx(10 * math.log10(1 / 0.025))
    assert set(r) == {"psnr", "ssim", "per_frame"}
    assert set(r["per_frame"][0]) == {"t", "psnr", "ssim"}


def test_score_perfect_match_is_json_safe():
    truth = np.random.default_rng(0).random((2, 1, 9, 9))
    r = score(truth.copy(), truth, [0, 1], 0.0, 1.0)
    assert r["psnr"] is None and r["per_frame"][0]["psnr"] is None
    assert r["ssim"] == pytest.approx(1.0)


def test_ssim_of_constant_slices_by_hand():
    # constant images: variances and covariance are 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1)
    mx, my = 0.5, 0.4
    a = np.full((2, 16, 16), mx)
    b = np.full((2, 16, 16), my)
    b[1] = mx  # second slice identical -> 1
    expected0 = (2 * mx * my + C1) / (mx**2 + my**2 + C1)
    got = ssim_slices(a, b)
    assert got.shape == (2,)
    assert got[0] == pytest.approx(expected0, rel=1e-9)
    assert got[1] == pytest.approx(1.0)
    # per frame: the mean over the frame's slices
    r = score(a[np.newaxis], b[np.newaxis], [0], 0.0, 1.0)
    assert r["ssim"] == pytest.approx((expected0 + 1.0) / 2)


def test_ssim_window_and_tiny_slices():
    assert ssim_window(256, 256) == 7
    assert ssim_window(5, 9) == 5
    assert ssim_window(6, 40) == 5
    assert ssim_window(2, 10) is None
    got = ssim_slices(np.zeros((3, 2, 10)), np.zeros((3, 2, 10)))
    assert np.isnan(got).all()


def test_score_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        score(np.zeros((2, 1, 8, 8)), np.zeros((3, 1, 8, 8)), [0], 0.0, 1.0)
