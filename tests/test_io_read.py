"""read_stack: every input format, the overrides, and one clear error per kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.stack import sha256_file
from napari_spatimeinr.io.formats import SUPPORTED_READ_SUFFIXES, stem_of, suffix_of
from napari_spatimeinr.io.read import read_stack


def _data(shape, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 1000 + 10).astype(dtype)


def _imagej(path, data, axes="TZYX", **md):
    meta = {"axes": axes, "spacing": 1.5, "unit": "um", "finterval": 2.5, **md}
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.25), metadata=meta)


# -- TIFF ------------------------------------------------------------------------------------------


def test_imagej_hyperstack(tmp_path):
    a = _data((3, 4, 10, 12))
    p = tmp_path / "movie.tif"
    _imagej(p, a)
    s = read_stack(p)
    assert s.shape == (3, 4, 10, 12)
    assert s.data.dtype == np.float32 and s.data.flags.c_contiguous and s.data.flags.writeable
    np.testing.assert_array_equal(s.data, a)
    assert s.voxel_size == pytest.approx((1.5, 0.25, 0.2))
    assert s.frame_interval == pytest.approx(2.5)
    assert s.extra["source_dtype"] == "uint16"
    assert s.extra["defaults"] == []
    assert s.name == "movie" and s.source_axes == "TZYX"
    assert s.source_path == str(p.resolve())
    assert s.source_sha256 == sha256_file(p)


def test_imagej_units_converted(tmp_path):
    p = tmp_path / "nm.tif"
    _imagej(p, _data((3, 2, 8, 8)), unit="nm", spacing=500.0, tunit="min", finterval=0.5)
    s = read_stack(p)
    assert s.voxel_size == pytest.approx((0.5, 0.25e-3, 0.2e-3))
    assert s.frame_interval == pytest.approx(30.0)


def test_imagej_2d_time_lapse_is_z1_and_volume_is_t1(tmp_path):
    p = tmp_path / "t.tif"
    _imagej(p, _data((5, 8, 9)), axes="TYX")
    s = read_stack(p)
    assert s.shape == (5, 1, 8, 9) and s.frame_interval == pytest.approx(2.5)
    # --axes naming the length-1 Z that the file leaves out is accepted
    assert read_stack(p, axes="TZYX").shape == (5, 1, 8, 9)
    p2 = tmp_path / "z.tif"
    _imagej(p2, _data((6, 8, 9)), axes="ZYX")
    assert read_stack(p2).shape == (1, 6, 8, 9)


def test_imagej_channel_selection_and_error(tmp_path):
    a = _data((2, 3, 4, 8, 9))
    p = tmp_path / "c.tif"
    _imagej(p, a, axes="TZCYX")
    s = read_stack(p, channel=2)
    np.testing.assert_array_equal(s.data, a[:, :, 2])
    with pytest.raises(SpatimeINRError, match=r"4 channels.*--channel N \(0\.\.3\)"):
        read_stack(p)
    with pytest.raises(SpatimeINRError, match="out of range"):
        read_stack(p, channel=4)


def test_compressed_tiff_read_lazily(tmp_path):
    a = _data((2, 3, 2, 8, 9))
    p = tmp_path / "zlib.tif"
    tifffile.imwrite(p, a, imagej=True, compression="zlib", metadata={"axes": "TZCYX"})
    s = read_stack(p, channel=1)
    np.testing.assert_array_equal(s.data, a[:, :, 1])
    assert s.extra["defaults"] == ["voxel_size", "frame_interval"]
    assert s.voxel_size == (1.0, 1.0, 1.0) and s.frame_interval == 1.0


def test_ome_tiff_units(tmp_path):
    a = _data((3, 4, 10, 12))
    p = tmp_path / "cells.ome.tif"
    md = {
        "axes": "TZYX",
        "PhysicalSizeX": 200,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.25,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 0.0015,
        "PhysicalSizeZUnit": "mm",
        "TimeIncrement": 2,
        "TimeIncrementUnit": "min",
    }
    tifffile.imwrite(p, a, ome=True, metadata=md)
    s = read_stack(p)
    np.testing.assert_array_equal(s.data, a)
    assert s.voxel_size == pytest.approx((1.5, 0.25, 0.2))
    assert s.frame_interval == pytest.approx(120.0)
    assert s.name == "cells"
    assert s.extra["metadata"] == "ome"


def test_ome_tiff_frame_interval_from_plane_delta_t(tmp_path):
    a = _data((4, 8, 9))
    p = tmp_path / "dt.ome.tif"
    md = {"axes": "TYX", "Plane": {"DeltaT": [0.0, 0.5, 1.0, 1.5], "DeltaTUnit": ["s"] * 4}}
    tifffile.imwrite(p, a, ome=True, metadata=md)
    s = read_stack(p)
    assert s.shape == (4, 1, 8, 9)
    assert s.frame_interval == pytest.approx(0.5)


def test_plain_tiff_axes_inferred_or_given(tmp_path):
    a = _data((5, 8, 9))
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, a, photometric="minisblack")
    s = read_stack(p)  # documented rule: 3D is a volume
    assert s.shape == (1, 5, 8, 9) and s.source_axes == "ZYX"
    assert s.extra["defaults"] == ["voxel_size", "frame_interval"]
    s = read_stack(p, axes="TYX", voxel_size=(2.0, 0.5, 0.5), frame_interval=10)
    assert s.shape == (5, 1, 8, 9)
    assert s.voxel_size == (2.0, 0.5, 0.5) and s.frame_interval == 10.0
    np.testing.assert_array_equal(s.data[:, 0], a)


def test_plain_tiff_4d(tmp_path):
    a = _data((2, 3, 8, 9))
    p = tmp_path / "plain4.tif"
    tifffile.imwrite(p, a, photometric="minisblack")
    s = read_stack(p)
    assert s.shape == (2, 3, 8, 9)
    np.testing.assert_array_equal(s.data, a)


def test_rgb_tiff_samples_are_channels(tmp_path):
    a = _data((8, 9, 3), np.uint8)
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, a, photometric="rgb")
    with pytest.raises(SpatimeINRError, match="3 channels"):
        read_stack(p)
    s = read_stack(p, channel=1)
    assert s.shape == (1, 1, 8, 9)
    np.testing.assert_array_equal(s.data[0, 0], a[..., 1])
    assert s.extra["source_dtype"] == "uint8"


def test_overrides_win_over_the_file(tmp_path):
    p = tmp_path / "o.tif"
    _imagej(p, _data((3, 4, 8, 9)))
    s = read_stack(p, voxel_size=(3, 2, 1), frame_interval=7)
    assert s.voxel_size == (3.0, 2.0, 1.0) and s.frame_interval == 7.0
    s = read_stack(p, axes="ZTYX")  # the user says the file's metadata has T and Z swapped
    assert s.shape == (4, 3, 8, 9)


# -- NIfTI, Zarr, npy ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_xyzt(tmp_path, suffix):
    nib = pytest.importorskip("nibabel")
    a = _data((3, 4, 10, 12))  # TZYX
    xyzt = np.transpose(a, (3, 2, 1, 0))
    img = nib.Nifti1Image(xyzt, np.diag([0.2, 0.25, 1.5, 1.0]))
    img.header.set_zooms((0.0002, 0.00025, 0.0015, 2500.0))
    img.header.set_xyzt_units("mm", "msec")
    p = tmp_path / f"vol{suffix}"
    nib.save(img, p)
    s = read_stack(p)
    np.testing.assert_array_equal(s.data, a)
    assert s.voxel_size == pytest.approx((1.5, 0.25, 0.2))
    assert s.frame_interval == pytest.approx(2.5)
    assert s.name == "vol" and s.source_axes == "XYZT"
    assert s.extra["source_dtype"] == "uint16"


def test_nifti_3d_is_one_frame(tmp_path):
    nib = pytest.importorskip("nibabel")
    a = _data((4, 10, 12))  # ZYX
    p = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.transpose(a, (2, 1, 0)), np.eye(4)), p)
    s = read_stack(p)
    assert s.shape == (1, 4, 10, 12)
    np.testing.assert_array_equal(s.data[0], a)
    assert "frame_interval" in s.extra["defaults"]


def _ome_zarr(path, a, axes, scale, fmt=None, units=None, levels=1):
    import warnings

    import zarr
    from ome_zarr.format import FormatV04

    with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    v04 = fmt == "0.4"
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if v04 else 3)
    datasets = []
    for level in range(levels):
        sub = a[..., :: 2**level, :: 2**level]
        group.create_array(str(level), shape=sub.shape, dtype=sub.dtype, chunks=sub.shape)[...] = (
            sub
        )
        s = [*scale[:-2], scale[-2] * 2**level, scale[-1] * 2**level]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": s}]}
        )
    ax = [
        {"name": n, "type": t, **({"unit": units[i]} if units and units[i] else {})}
        for i, (n, t) in enumerate(axes)
    ]
    write_multiscales_metadata(group, datasets, fmt=FormatV04() if v04 else None, axes=ax)


@pytest.mark.parametrize("fmt", ["0.4", "0.5"])
def test_ome_zarr(tmp_path, fmt):
    a = _data((3, 2, 4, 8, 10))  # t c z y x
    axes = [("t", "time"), ("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space")]
    units = ["millisecond", None, "nanometer", "micrometer", "micrometer"]
    p = tmp_path / "img.ome.zarr"
    _ome_zarr(p, a, axes, [500.0, 1.0, 1500.0, 0.25, 0.2], fmt=fmt, units=units, levels=2)
    s = read_stack(p, channel=1)
    np.testing.assert_array_equal(s.data, a[:, 1])  # highest resolution level
    assert s.voxel_size == pytest.approx((1.5, 0.25, 0.2))
    assert s.frame_interval == pytest.approx(0.5)
    assert s.name == "img"
    assert s.extra["metadata"] == f"ome-zarr {fmt}"
    with pytest.raises(SpatimeINRError, match="--channel"):
        read_stack(p)


def test_ome_zarr_unknown_axis_names_are_ambiguous(tmp_path):
    a = _data((3, 8, 10))
    p = tmp_path / "odd.zarr"
    _ome_zarr(p, a, [("angle", "space"), ("y", "space"), ("x", "space")], [1.0, 1.0, 1.0])
    with pytest.raises(SpatimeINRError, match="ambiguous.*--axes"):
        read_stack(p)
    assert read_stack(p, axes="TYX").shape == (3, 1, 8, 10)


def test_npy_inferred_and_given(tmp_path):
    a = _data((2, 3, 8, 9), np.float32)
    p = tmp_path / "arr.npy"
    np.save(p, a)
    s = read_stack(p)
    np.testing.assert_array_equal(s.data, a)
    s.data[0, 0, 0, 0] = -1  # never a view of the file
    assert np.load(p)[0, 0, 0, 0] == a[0, 0, 0, 0]
    p3 = tmp_path / "arr3.npy"
    np.save(p3, a[0])
    assert read_stack(p3).shape == (1, 3, 8, 9)
    assert read_stack(p3, axes="TYX").shape == (3, 1, 8, 9)


def test_names_and_suffixes():
    assert stem_of("a/movie.ome.tif") == "movie"
    assert stem_of("x.nii.gz") == "x" and stem_of("y.ome.zarr") == "y"
    assert suffix_of("A.OME.TIFF") == ".ome.tiff"
    for s in (".tif", ".ome.tif", ".nii", ".nii.gz", ".zarr", ".npy"):
        assert s in SUPPORTED_READ_SUFFIXES


# -- bad input: one clear message each ------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(SpatimeINRError, match="No such file.*Check the path"):
        read_stack(tmp_path / "nope.tif")


def test_unknown_suffix_lists_supported(tmp_path):
    p = tmp_path / "movie.avi"
    p.write_bytes(b"x")
    with pytest.raises(SpatimeINRError) as e:
        read_stack(p)
    msg = str(e.value)
    assert "'.avi'" in msg
    for s in SUPPORTED_READ_SUFFIXES:
        assert s in msg


@pytest.mark.parametrize("shape", [(7,), (2, 2, 2, 2, 2, 3)])
def test_wrong_number_of_dimensions(tmp_path, shape):
    p = tmp_path / "bad.npy"
    np.save(p, _data(shape, np.float32))
    with pytest.raises(SpatimeINRError, match=f"{len(shape)} dimensions.*2 to 5"):
        read_stack(p)


def test_axes_not_matching_dimensions(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, _data((2, 3, 8, 9), np.float32))
    with pytest.raises(SpatimeINRError, match="name 3 dimensions but the image has 4"):
        read_stack(p, axes="ZYX")


@pytest.mark.parametrize("axes", ["TTYX", "TZYQ"])
def test_ambiguous_axes(tmp_path, axes):
    p = tmp_path / "a.npy"
    np.save(p, _data((2, 3, 8, 9), np.float32))
    with pytest.raises(SpatimeINRError, match="ambiguous.*each of T, C, Z, Y, X at most once"):
        read_stack(p, axes=axes)


def test_channel_axis_without_channel(tmp_path):
    p = tmp_path / "c.npy"
    np.save(p, _data((2, 3, 4, 8, 9), np.float32))  # 5D: TCZYX by the rule
    with pytest.raises(SpatimeINRError, match="3 channels.*choose one with --channel"):
        read_stack(p)
    assert read_stack(p, channel=0).shape == (2, 4, 8, 9)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_refused(tmp_path, bad):
    a = _data((2, 3, 8, 9), np.float32)
    a[1, 2, 3, 4] = bad
    p = tmp_path / "n.tif"
    tifffile.imwrite(p, a, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(SpatimeINRError, match="1 NaN/Inf values: replace them"):
        read_stack(p)


def test_constant_stack_refused(tmp_path):
    p = tmp_path / "flat.npy"
    np.save(p, np.full((2, 3, 8, 9), 7, np.uint16))
    with pytest.raises(SpatimeINRError, match="constant.*Check the channel"):
        read_stack(p)
    assert read_stack(p, validate=False).shape == (2, 3, 8, 9)


@pytest.mark.parametrize(
    "kw", [{"voxel_size": (1, 0, 1)}, {"voxel_size": (1, float("nan"), 1)}, {"frame_interval": -1}]
)
def test_bad_overrides(tmp_path, kw):
    p = tmp_path / "a.npy"
    np.save(p, _data((2, 3, 8, 9), np.float32))
    with pytest.raises(SpatimeINRError, match="not usable: give"):
        read_stack(p, **kw)


def test_broken_tiff(tmp_path):
    p = tmp_path / "broken.tif"
    p.write_bytes(b"II*\x00garbage")
    with pytest.raises(SpatimeINRError, match="Cannot read broken.tif as TIFF"):
        read_stack(p)
