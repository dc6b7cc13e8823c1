import numpy as np
import pytest

from napari_spatimeinr.core.coords import (
    make_grid,
    spatial_coords,
    spatial_size,
    temporal_coords,
    temporal_size,
)
from napari_spatimeinr.core.errors import SpatimeINRError


def test_temporal_integer_factor_keeps_input_frames():
    t = temporal_coords(5, 4)
    assert temporal_size(5, 4) == 17 == len(t)
    np.testing.assert_array_equal(t[::4], np.arange(5))
    assert t[-1] == 4.0


def test_temporal_float_factor_spans_first_to_last():
    t = temporal_coords(10, 1.5)
    assert len(t) == round(9 * 1.5) + 1
    assert t[0] == 0 and t[-1] == 9
    assert np.allclose(np.diff(t), 9 / (len(t) - 1))


def test_spatial_voxel_centres():
    # x2 on 4 voxels: centres at -0.25, 0.25, 0.75, ...
    np.testing.assert_allclose(
        spatial_coords(4, 2), [-0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25]
    )
    # identity
    np.testing.assert_allclose(spatial_coords(7, 1), np.arange(7))
    # mean-pooling by k then x k puts output centres on the original voxel centres
    k, n = 4, 12
    pooled_centres = (np.arange(n // k) + 0.5) * k - 0.5  # in original units
    c = spatial_coords(n // k, k)  # in pooled units
    np.testing.assert_allclose(c * k + (k - 1) / 2, np.arange(n))
    assert len(pooled_centres) == n // k
    assert spatial_size(3, 0.5) == 2


def test_grid_roi_and_trange_are_subblocks_of_full_grid():
    full = make_grid((5, 6, 10, 12), 2, (2, 1.5, 1))
    part = make_grid((5, 6, 10, 12), 2, (2, 1.5, 1), t_range=(1, 3), roi=(2, 4, 0, 10, 3, 7))
    for a_full, a_part, off in zip(full.axes, part.axes, part.offset, strict=True):
        np.testing.assert_array_equal(a_full[off : off + len(a_part)], a_part)
    assert part.t[0] == 1 and part.t[-1] == 3
    assert part.z.min() >= 1.5 and part.z.max() < 3.5
    assert part.full_shape == full.shape


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_factor_is_refused(bad):
    with pytest.raises(SpatimeINRError, match="factor"):
        make_grid((3, 4, 5, 6), bad)


def test_temporal_factor_on_single_frame_is_refused():
    with pytest.raises(SpatimeINRError, match="single time point"):
        make_grid((1, 4, 5, 6), 2)


def test_roi_out_of_range_is_refused():
    with pytest.raises(SpatimeINRError, match="ROI"):
        make_grid((2, 4, 5, 6), 1, roi=(0, 9, 0, 5, 0, 6))


def test_t_range_between_output_frames_is_a_clear_error():
    import pytest

    from napari_spatimeinr.core.errors import SpatimeINRError

    with pytest.raises(SpatimeINRError, match="holds no output frame"):
        make_grid((5, 1, 4, 4), 1, (1, 1, 1), t_range=(0.5, 0.6))
