"""Baselines: scipy-exact splines, motion-compensated interpolation, the smoothed oracle."""

import numpy as np
import pytest
from scipy import ndimage

from conftest import smooth_random
from napari_spatimeinr.core.coords import make_grid
from napari_spatimeinr.workflows.evaluate.baselines import (
    baselines_for,
    best_smoothed,
    interpolate,
    motion_interpolate,
    motion_pair,
)
from napari_spatimeinr.workflows.evaluate.metrics import psnr


def run_gen(gen):
    """Drive a generator to its return value; also return what it yielded."""
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as stop:
        return stop.value, items


@pytest.mark.parametrize("method,order", [("cubic", 3), ("linear", 1), ("nearest", 0)])
@pytest.mark.parametrize(
    "scale_t,scale_zyx", [(3.0, (1, 1, 1)), (1.0, (2, 2, 2)), (1.0, (4, 1, 1))]
)
def test_classical_equals_scipy_whole_volume(method, order, scale_t, scale_zyx):
    data = smooth_random((5, 4, 11, 9), seed=1, sigma=1.0)
    got = interpolate(data, scale_t, scale_zyx, method)
    grid = make_grid(data.shape, scale_t, scale_zyx)
    pts = np.meshgrid(*grid.axes, indexing="ij")
    ref = ndimage.map_coordinates(data.astype(np.float64), pts, order=order, mode="nearest")
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5 * float(np.ptp(data))


def test_classical_in_slabs_equals_whole():
    data = smooth_random((6, 3, 10, 9), seed=4, sigma=1.0)
    whole = interpolate(data, 3.0, (1, 1, 1), "cubic")
    slabs = interpolate(data, 3.0, (1, 1, 1), "cubic", chunk_voxels=1)  # one frame per slab
    np.testing.assert_allclose(slabs, whole, atol=1e-6 * float(np.ptp(data)))


def test_baselines_per_task():
    assert baselines_for("temporal") == ("nearest", "linear", "cubic", "motion", "smoothed")
    assert baselines_for("spatial") == ("nearest", "linear", "cubic", "smoothed")


def test_motion_pair_with_zero_flow_is_a_linear_blend():
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 9)).astype(np.float32), rng.random((8, 9)).astype(np.float32)
    got = motion_pair(a, b, np.zeros((2, 8, 9), np.float32), 0.25)
    np.testing.assert_allclose(got, 0.75 * a + 0.25 * b, atol=1e-6)


def test_motion_pair_follows_a_uniform_shift():
    # b is a shifted by +2 px in x: a(x) = b(x + 2), flow v = (0, 2); halfway = shift by 1
    x = np.arange(40, dtype=np.float32)
    a = np.exp(-((x - 15) ** 2) / 8)[None].repeat(5, 0)
    b = np.exp(-((x - 17) ** 2) / 8)[None].repeat(5, 0)
    mid = np.exp(-((x - 16) ** 2) / 8)[None].repeat(5, 0)
    flow = np.zeros((2, 5, 40), np.float32)
    flow[1] = 2.0
    got = motion_pair(a, b, flow, 0.5)
    assert np.abs(got - mid).max() < 0.03  # only the linear warp's own blur
    assert np.abs(0.5 * a + 0.5 * b - mid).max() > 0.1  # a plain blend is clearly worse


def moving_blob(n_t, shape, step, axis, sigma=2.5):
    """A Gaussian blob moving by ``step`` voxels per frame along ``axis`` (0 = z, 1 = y, 2 = x)."""
    grids = np.indices(shape, dtype=np.float64)
    centre = np.array(shape, dtype=np.float64) / 2 - step * (n_t - 1) / 2 * np.eye(3)[axis]
    frames = []
    for t in range(n_t):
        c = centre + step * t * np.eye(3)[axis]
        r2 = sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True))
        frames.append(np.exp(-r2 / (2 * sigma**2)) * 1000 + 100)
    return np.asarray(frames, dtype=np.float32)


@pytest.mark.parametrize("shape,axis", [((1, 32, 40), 2), ((16, 20, 20), 0)])
def test_motion_beats_linear_on_a_moving_blob(shape, axis):
    # 2D (Z = 1) flow in x; 3D flow (Z > 1) along z, which 2D flows per slice could not follow
    truth = moving_blob(5, shape, step=1.5, axis=axis)
    k = 2
    kept = truth[::k]
    got, progress = run_gen(motion_interpolate(kept, k))
    assert got.shape == truth.shape
    assert len(progress) == len(kept) - 1 and progress[-1].step == progress[-1].total
    np.testing.assert_array_equal(got[::k], kept)  # kept frames come back unchanged
    lin = 0.5 * (kept[:-1] + kept[1:])
    span = float(np.ptp(truth))
    p_motion = psnr(got[1::k] / span, truth[1::k] / span)
    p_linear = psnr(lin / span, truth[1::k] / span)
    assert p_motion > p_linear + 8


def test_motion_stops():
    kept = moving_blob(3, (1, 16, 16), 1.0, 2)
    got, progress = run_gen(motion_interpolate(kept, 2, stop=lambda: True))
    assert got is None and progress == []


def test_best_smoothed_picks_base_and_sigma_on_the_truth():
    rng = np.random.default_rng(3)
    truth = smooth_random((4, 1, 32, 32), seed=2, sigma=3.0)
    noisy = truth + rng.normal(0, 40, truth.shape).astype(np.float32)
    noisier = truth + rng.normal(0, 80, truth.shape).astype(np.float32)
    lo, hi = float(truth.min()), float(truth.max())
    base, sigma, pred, table = best_smoothed(
        {"a": noisier, "b": noisy}, truth, [1, 3], lo, hi, sigmas=(0.5, 1.0, 1.5, 2.0)
    )
    assert base == "b"
    assert sigma > 0.5
    assert set(table) == {"a", "b"} and set(table["b"]) == {"0.5", "1", "1.5", "2"}
    assert table["b"][f"{sigma:g}"] == max(max(v.values()) for v in table.values())
    # the returned prediction is the chosen base blurred in y and x only, on every frame
    ref = ndimage.gaussian_filter(noisy, (0, 0, sigma, sigma), mode="nearest")
    np.testing.assert_allclose(pred, ref, atol=1e-3)
