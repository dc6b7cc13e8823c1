"""Classical methods on the model-directory rails equal scipy's whole-volume interpolation."""

import numpy as np
import pytest
from scipy import ndimage

from napari_spatimeinr import api
from napari_spatimeinr.core.chunks import auto_chunks
from napari_spatimeinr.core.coords import make_grid
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.render.lazy import plan_render, render


def scipy_reference(data, grid, order):
    pts = np.meshgrid(*grid.axes, indexing="ij")
    return ndimage.map_coordinates(data.astype(np.float64), pts, order=order, mode="nearest")


def train_classical(stack, path, method):
    records = list(api.train(stack, path, {"method": method}))
    assert records[-1].done
    return path


@pytest.mark.parametrize("method,order", [("cubic", 3), ("linear", 1), ("nearest", 0)])
def test_render_equals_scipy_across_chunk_seams(tmp_path, small_stack, method, order):
    md = train_classical(small_stack, tmp_path / "m", method)
    scale_t, scale_zyx = 2.5, (1.7, 2.0, 0.6)
    # tiny chunks: many seams in every axis
    arr = render(md, scale_t, scale_zyx, chunks=(2, 3, 7, 5))
    assert arr.numblocks[0] > 1 and arr.numblocks[1] > 1 and arr.numblocks[2] > 1
    got = arr.compute(scheduler="threads")
    ref = scipy_reference(small_stack.data, make_grid(small_stack.shape, scale_t, scale_zyx), order)
    rng = float(small_stack.data.max() - small_stack.data.min())
    assert got.dtype == np.float32
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * rng


def test_render_roi_is_subblock_of_full(tmp_path, small_stack):
    md = train_classical(small_stack, tmp_path / "m", "cubic")
    full = render(md, 2, (2, 2, 2)).compute()
    plan = plan_render(md, 2, (2, 2, 2), t_range=(1, 3), roi=(1, 4, 2, 20, 3, 9))
    part = render(md, 2, (2, 2, 2), t_range=(1, 3), roi=(1, 4, 2, 20, 3, 9)).compute()
    o = plan.grid.offset
    sub = full[
        o[0] : o[0] + part.shape[0],
        o[1] : o[1] + part.shape[1],
        o[2] : o[2] + part.shape[2],
        o[3] : o[3] + part.shape[3],
    ]
    np.testing.assert_allclose(part, sub, atol=1e-5 * float(np.ptp(full)))
    assert plan.meta.provenance["output_offset"] == list(o)


def test_plan_metadata(tmp_path, small_stack):
    md = train_classical(small_stack, tmp_path / "m", "linear")
    plan = plan_render(md, 4, (2, 4, 0.5))
    t, z, y, x = plan.shape
    assert (t, z, y, x) == (21, 10, 96, 10)
    assert plan.meta.frame_interval == pytest.approx(30.0 * 5 / 20)
    assert plan.meta.voxel_size == pytest.approx((0.5, 0.05, 0.4))
    # the first output voxel centre sits half an output voxel inside the input's first voxel
    assert plan.meta.origin[1] == pytest.approx(-0.25 * 1.0)
    assert plan.meta.origin[2] == pytest.approx(-0.375 * 0.2)
    assert plan.meta.provenance["method"] == "linear"
    assert plan.meta.provenance["factors"] == {"t": 4, "z": 2, "y": 4, "x": 0.5}


def test_auto_chunks_targets_size():
    c = auto_chunks((10, 50, 512, 512), chunk_mb=8)
    assert c[0] == 1 and c[2:] == (512, 512)
    c = auto_chunks((100, 1, 256, 256), chunk_mb=8)
    assert c[0] > 1 and 4 * np.prod(c) <= 8e6
    assert 4 * np.prod(c) <= 8e6
    c = auto_chunks((2, 2, 4096, 4096), chunk_mb=8)
    assert c[1] == 1 and c[3] == 4096 and 4 * np.prod(c) <= 8e6


def test_render_is_lazy_and_deterministic(tmp_path, small_stack):
    md = train_classical(small_stack, tmp_path / "m", "cubic")
    a = render(md, 2, (2, 2, 2))
    b = render(md, 2, (2, 2, 2))
    assert a.name == b.name  # same model and grid -> same keys: caches are reused


def test_model_dir_not_overwritten(tmp_path, small_stack):
    path = tmp_path / "m"
    train_classical(small_stack, path, "cubic")
    with pytest.raises(SpatimeINRError, match="already exists"):
        list(api.train(small_stack, path, {"method": "cubic"}))
    # --overwrite replaces it
    list(api.train(small_stack, path, {"method": "linear"}, overwrite=True))
    assert api.open_model(path).method == "linear"


def test_missing_model_dir_message(tmp_path):
    with pytest.raises(SpatimeINRError, match="No model directory"):
        render(tmp_path / "nope")
