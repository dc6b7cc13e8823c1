"""napari hooks without a viewer: sample data, reader (stacks and model dirs), writer round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_spatimeinr import api
from napari_spatimeinr._reader import get_reader, is_model_dir
from napari_spatimeinr._sample_data import nuclei_timelapse
from napari_spatimeinr._writer import write_image
from napari_spatimeinr.core.errors import SpatimeINRError


def test_sample_is_4d_at_physical_scale():
    [(data, kw, kind)] = nuclei_timelapse()
    assert kind == "image" and data.ndim == 4 and data.dtype == np.float32
    assert kw["scale"] == (30.0, 1.0, 0.2, 0.2)
    assert kw["metadata"]["spatimeinr"]["axes"] == "TZYX"


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".nii.gz", ".zarr"])
def test_writer_reader_round_trip(tmp_path, small_stack, suffix):
    attrs = {
        "name": "tiny",
        "scale": (30.0, 1.0, 0.2, 0.2),
        "translate": (0.0, 0.0, 0.0, 0.0),
        "metadata": {},
    }
    path = tmp_path / f"out{suffix}"
    [written] = write_image(str(path), small_stack.data, attrs)
    reader = get_reader(written)
    assert reader is not None
    [(data, kw, kind)] = reader(written)
    np.testing.assert_allclose(data, small_stack.data, rtol=1e-6)
    np.testing.assert_allclose(kw["scale"], (30.0, 1.0, 0.2, 0.2), rtol=1e-5)


def test_writer_uses_layer_scale_for_3d_layers(tmp_path):
    vol = np.random.default_rng(0).random((4, 8, 9)).astype(np.float32)
    [written] = write_image(str(tmp_path / "v.tif"), vol, {"scale": (2.0, 0.5, 0.25)})
    with tifffile.TiffFile(written) as tf:
        ij = tf.imagej_metadata
        assert ij["spacing"] == pytest.approx(2.0)
        xres = tf.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(4.0)


def test_writer_refuses_5d(tmp_path):
    with pytest.raises(SpatimeINRError, match="Split stack"):
        write_image(str(tmp_path / "x.tif"), np.zeros((2, 2, 2, 2, 2)), {})


def test_reader_declines_unknown(tmp_path):
    assert get_reader(str(tmp_path / "a.png")) is None
    assert not is_model_dir(tmp_path)


def test_reader_opens_model_dir_with_lazy_render(tmp_path, small_stack):
    out = tmp_path / "m.spatimeinr"
    list(api.train(small_stack, out, {"method": "linear"}))
    assert is_model_dir(out)
    layers = get_reader(str(out))(str(out))
    (inp, ikw, _), (lazy, rkw, _) = layers
    import dask.array as da

    assert isinstance(getattr(lazy, "dask", lazy), da.Array)  # AsyncArray (Qt) or dask
    assert getattr(lazy, "dask", lazy).chunksize == (1, 1, 24, 20)  # one plane per chunk
    assert inp.shape == (6, 5, 24, 20)
    assert lazy.shape == (11, 5, 24, 20)  # x2 in time: (T-1)*2+1
    assert rkw["scale"] == pytest.approx((15.0, 1.0, 0.2, 0.2))
    md = api.open_model(out)
    assert rkw["contrast_limits"] == (md.norm.low, md.norm.high)
    json.dumps(rkw["metadata"])  # serializable


def test_browse_chunks_are_planes_split_along_y():
    from napari_spatimeinr._layers import browse_chunks

    assert browse_chunks((5, 7, 64, 80)) == (1, 1, 64, 80)
    assert browse_chunks((5, 7, 4096, 4096), max_voxels=2**20) == (1, 1, 256, 4096)
    assert browse_chunks((1, 1, 3, 10**7), max_voxels=100) == (1, 1, 1, 10**7)
