"""The torch optical flow and warps of the fast engine (napari_spatimeinr.engines.fast.flow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_spatimeinr.engines.fast import flow
from napari_spatimeinr.engines.fast.motion import tvl1_flow


def _blob(center, shape, s=3.0) -> np.ndarray:
    grids = np.indices(shape, dtype=np.float32)
    r2 = sum((g - c) ** 2 for g, c in zip(grids, center, strict=True))
    return np.exp(-r2 / (2 * s * s)).astype(np.float32)


@pytest.mark.parametrize("shape", [(24, 31), (5, 17, 21), (1, 9, 12)])
def test_torch_warp_equals_scipy_linear_nearest(shape):
    rng = np.random.default_rng(0)
    img = rng.random(shape).astype(np.float32)
    disp = (rng.normal(0, 4, (len(shape), *shape))).astype(np.float32)  # reaches past the edges
    ref = ndimage.map_coordinates(
        img, np.indices(shape, dtype=np.float32) + disp, order=1, mode="nearest"
    )
    ours = flow.warp(torch.from_numpy(img)[None], torch.from_numpy(disp)[None])[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_tvl1_matches_scikit_image_on_one_level():
    a, b = _blob((16, 12), (32, 32)), _blob((16, 15), (32, 32))
    ours = flow.tvl1(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0].numpy()
    np.testing.assert_allclose(ours, tvl1_flow(a, b), atol=2e-3)


@pytest.mark.parametrize(
    ("shape", "shift"), [((96, 128), (0.0, 7.0)), ((6, 40, 72), (1.0, -2.0, 4.0))]
)
def test_coarse_to_fine_flow_recovers_a_shift_and_batches_pairs(shape, shift):
    centre = [n / 2 for n in shape]
    a = _blob(centre, shape, s=4.0)
    b = _blob([c + d for c, d in zip(centre, shift, strict=True)], shape, s=4.0)
    assert len(flow.pyramid_shapes(shape)) > 1  # large frames get coarse levels
    pair = torch.from_numpy(np.stack([a, b]))
    v = flow.tvl1(pair[[0, 1]], pair[[1, 0]])  # both directions in one batch
    on = a > 0.5
    for axis, d in enumerate(shift):
        assert np.median(v[0, axis].numpy()[on]) == pytest.approx(d, abs=0.5)
    on_b = b > 0.5
    assert np.median(v[1, -1].numpy()[on_b]) == pytest.approx(-shift[-1], abs=0.5)


def test_pyramid_halves_only_long_axes():
    levels = flow.pyramid_shapes((17, 144, 224))
    assert levels[0] == (17, 144, 224)
    assert all(s[0] == 17 for s in levels)  # a thin z axis is never reduced
    assert min(levels[-1][1:]) <= 2 * flow.MIN_SIZE


def test_flow_on_a_subsampled_grid_comes_back_to_the_voxels():
    grid = flow.flow_grid_shape((3, 100, 64), 2)
    assert grid == (3, 50, 32)
    const = torch.ones((1, 3, *grid))
    const[:, 2] = 1.5  # 1.5 grid cells in x = 3 voxels
    full = flow.upsample_flow(const, (3, 100, 64))
    assert full.shape == (1, 3, 3, 100, 64)
    np.testing.assert_allclose(full[0, 2].numpy(), 3.0, atol=1e-6)
    np.testing.assert_allclose(full[0, 0].numpy(), 1.0, atol=1e-6)  # z is not subsampled


def test_frame_flows_are_stored_small_and_follow_motion():
    frames = np.stack([_blob((32, 30 + 3 * t), (64, 96), s=4.0) for t in range(3)])
    data = frames[:, None] * 100.0  # (T, Z=1, Y, X)
    (i0, v), *rest = list(flow.iter_frame_flows(data, flow.auto_stride((64, 96))))
    assert i0 == 0 and not rest and v.dtype == np.float16
    assert v.shape == (2, 2, 32, 48)
    assert v.nbytes <= 0.5 * data.astype(np.float32).nbytes
    full = flow.full_flow(v[0], (64, 96)).numpy()
    assert np.median(full[1][frames[0] > 0.5]) == pytest.approx(3.0, abs=0.5)
