"""write_array: round trips per format (read back directly and with read_stack), uint16 encoding,
temporary files, overwrite/disk/size refusals, cancel, and streaming (never the whole array)."""

from __future__ import annotations

import gzip
import json
import threading
import xml.etree.ElementTree as ET

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_spatimeinr.core.errors import SpatimeINRError, StopRequested
from napari_spatimeinr.io import slabs as slabs_mod
from napari_spatimeinr.io import write as write_mod
from napari_spatimeinr.io.meta import OutputMeta
from napari_spatimeinr.io.read import read_stack
from napari_spatimeinr.io.write import SUPPORTED_WRITE_SUFFIXES, estimate_output_bytes, write_array

SHAPE = (3, 4, 10, 12)
FORMATS = [".tif", ".ome.tif", ".nii", ".nii.gz", ".zarr"]
PROV = {"software": "napari-spatimeinr", "method": "cubic", "source_sha256": "abc", "seed": 0}


def _array(shape=SHAPE, low=10.0, high=1000.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * (high - low) + low).astype(np.float32)


def _meta(a, source_dtype="float32", origin=(0.0, 0.0, 0.0, 0.0), intensity=None):
    return OutputMeta(
        voxel_size=(1.5, 0.26, 0.0655),
        frame_interval=4.5,
        origin=origin,
        name="tiny cubic x2",
        provenance=dict(PROV),
        intensity_range=intensity or (float(a.min()), float(a.max())),
        source_dtype=source_dtype,
    )


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def _prov_direct(path, suffix):
    """Provenance and physical metadata read with the format's own library."""
    if suffix == ".tif":
        with tifffile.TiffFile(path) as tif:
            ij = tif.imagej_metadata
            assert tif.series[0].axes == "TZYX"
            xres, yres = tif.pages.first.resolution
            data = tif.series[0].asarray()
            phys = (ij["spacing"], 1 / yres, 1 / xres, ij["finterval"])
            assert ij["unit"] == "um"
            return json.loads(ij["Info"]), phys, data
    if suffix == ".ome.tif":
        with tifffile.TiffFile(path) as tif:
            assert tif.is_bigtiff and tif.is_ome
            px = ET.fromstring(tif.ome_metadata).find("{*}Image/{*}Pixels").attrib
            for k in "XYZ":
                assert px[f"PhysicalSize{k}Unit"] == "µm"
            assert px["TimeIncrementUnit"] == "s"
            desc = ET.fromstring(tif.ome_metadata).find("{*}Image/{*}Description").text
            phys = tuple(float(px[k]) for k in ("PhysicalSizeZ", "PhysicalSizeY", "PhysicalSizeX"))
            data = tif.series[0].asarray().reshape(SHAPE)
            return json.loads(desc), (*phys, float(px["TimeIncrement"])), data
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        img = nib.load(str(path))
        assert img.header.get_xyzt_units() == ("micron", "sec")
        zx, zy, zz, zt = (float(v) for v in img.header.get_zooms())
        ext = [e for e in img.header.extensions if e.get_code() == 6][0]
        data = np.transpose(img.dataobj.get_unscaled(), (3, 2, 1, 0))  # stored values
        return json.loads(ext.get_content()), (zz, zy, zx, zt), data
    import zarr

    g = zarr.open_group(str(path), mode="r")
    ms = g.attrs["ome"]["multiscales"][0]
    assert g.attrs["ome"]["version"] == "0.5"
    assert [a["unit"] for a in ms["axes"]] == ["second", *["micrometer"] * 3]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    return (
        {"spatimeinr": g.attrs["spatimeinr"]},
        (*scale[1:], scale[0]),
        np.asarray(g["0"][...]),
    )


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_float32(tmp_path, suffix):
    a = _array()
    meta = _meta(a)
    darr = da.from_array(a, chunks=(1, 2, 10, 12))
    seen = []
    out = write_array(
        darr, tmp_path / f"out{suffix}", meta, progress=lambda d, t: seen.append((d, t))
    )
    assert out == tmp_path / f"out{suffix}"
    assert _files(tmp_path) == [f"out{suffix}"]  # no temporary left
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    prov, phys, data = _prov_direct(out, suffix)
    np.testing.assert_array_equal(data, a)
    assert phys == pytest.approx((1.5, 0.26, 0.0655, 4.5), rel=1e-6)
    p = prov["spatimeinr"]
    assert p["method"] == "cubic" and p["source_sha256"] == "abc" and p["dtype"] == "float32"

    s = read_stack(out)
    np.testing.assert_array_equal(s.data, a)
    assert s.voxel_size == pytest.approx((1.5, 0.26, 0.0655))
    assert s.frame_interval == pytest.approx(4.5)
    assert s.extra["provenance"]["method"] == "cubic"
    assert s.name == "out"


@pytest.mark.parametrize("suffix", [".tif", ".nii", ".zarr"])
def test_origin_written_and_read_back(tmp_path, suffix):
    a = _array()
    meta = _meta(a, origin=(9.0, 3.0, 2.6, 1.31))
    out = write_array(da.from_array(a, chunks=(1, 4, 10, 12)), tmp_path / f"o{suffix}", meta)
    assert read_stack(out).origin == pytest.approx((9.0, 3.0, 2.6, 1.31))
    if suffix == ".zarr":
        import zarr

        ms = zarr.open_group(str(out), mode="r").attrs["ome"]["multiscales"][0]
        tr = ms["datasets"][0]["coordinateTransformations"][1]
        assert tr == {"type": "translation", "translation": [9.0, 3.0, 2.6, 1.31]}


@pytest.mark.parametrize("suffix", FORMATS)
def test_uint16_raw_units_with_clipping_counted(tmp_path, suffix):
    a = _array(low=-5.0, high=900.0)  # cubic overshoot below 0 of a uint16 input
    n_neg = int((np.rint(a) < 0).sum())
    assert n_neg > 0
    meta = _meta(a, source_dtype="uint16", intensity=(0.0, 900.0))
    out = write_array(
        da.from_array(a, chunks=(1, 2, 10, 12)), tmp_path / f"u{suffix}", meta, "uint16"
    )
    prov, _, data = _prov_direct(out, suffix)
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, np.clip(np.rint(a), 0, 65535).astype(np.uint16))
    u = prov["spatimeinr"]["uint16"]
    assert u["mapping"] == "raw" and u["clipped_low"] == n_neg and u["clipped_high"] == 0
    s = read_stack(out)
    assert s.extra["source_dtype"] == "uint16"
    assert s.extra["provenance"]["uint16"]["clipped_low"] == n_neg


@pytest.mark.parametrize("suffix", FORMATS)
def test_uint16_linear_mapping_recorded_and_inverted(tmp_path, suffix):
    a = _array(low=0.0, high=1.0)  # a float input: its range is mapped onto 0..65535
    lo, hi = float(a.min()), float(a.max())
    meta = _meta(a, source_dtype="float32", intensity=(lo, hi))
    out = write_array(
        da.from_array(a, chunks=(1, 2, 10, 12)), tmp_path / f"l{suffix}", meta, "uint16"
    )
    prov, _, data = _prov_direct(out, suffix)
    assert data.dtype == np.uint16 and data.min() == 0 and data.max() == 65535
    u = prov["spatimeinr"]["uint16"]
    assert u["mapping"] == "linear" and u["offset"] == pytest.approx(lo)
    assert u["scale"] == pytest.approx((hi - lo) / 65535)
    assert u["clipped_low"] == 0 and u["clipped_high"] == 0
    s = read_stack(out)  # the mapping is undone on reading (ImageJ c0/c1, NIfTI scl_*)
    np.testing.assert_allclose(s.data, a, atol=u["scale"] * 0.51)
    assert s.extra["source_dtype"] == "float32"
    if suffix == ".tif":
        with tifffile.TiffFile(out) as tif:
            ij = tif.imagej_metadata
            assert ij["cf"] == 0 and ij["c1"] == pytest.approx(u["scale"])


def test_no_8bit_output(tmp_path):
    a = _array()
    with pytest.raises(SpatimeINRError, match="'uint8' is not supported: choose float32"):
        write_array(da.from_array(a), tmp_path / "x.tif", _meta(a), "uint8")
    assert _files(tmp_path) == []


def test_nii_gz_when_chunks_are_not_in_file_order(tmp_path):
    a = _array()
    darr = da.from_array(a, chunks=(2, 3, 4, 12))  # slabs are not contiguous runs of the file
    out = write_array(darr, tmp_path / "f.nii.gz", _meta(a))
    assert _files(tmp_path) == ["f.nii.gz"]
    np.testing.assert_array_equal(read_stack(out).data, a)
    # a valid multi-member gzip stream
    assert len(gzip.decompress(out.read_bytes())) > a.nbytes


def test_zarr_irregular_chunks(tmp_path):
    a = _array()
    darr = da.concatenate([da.from_array(a[:1]), da.from_array(a[1:])], axis=0).rechunk({1: (1, 3)})
    out = write_array(darr, tmp_path / "i.zarr", _meta(a))
    np.testing.assert_array_equal(read_stack(out).data, a)


# -- refusals ------------------------------------------------------------------------------------


def test_existing_output_refused_without_overwrite(tmp_path):
    a = _array()
    p = tmp_path / "x.ome.tif"
    p.write_bytes(b"old")
    with pytest.raises(SpatimeINRError, match="already exists.*--overwrite"):
        write_array(da.from_array(a), p, _meta(a))
    assert p.read_bytes() == b"old"
    write_array(da.from_array(a), p, _meta(a), overwrite=True)
    np.testing.assert_array_equal(read_stack(p).data, a)


def test_zarr_overwrite_replaces_store_but_never_other_folders(tmp_path):
    a = _array()
    p = tmp_path / "x.zarr"
    write_array(da.from_array(a), p, _meta(a))
    b = a + 1
    write_array(da.from_array(b), p, _meta(b), overwrite=True)
    np.testing.assert_array_equal(read_stack(p).data, b)
    assert _files(tmp_path) == ["x.zarr"]
    folder = tmp_path / "precious.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(SpatimeINRError, match="not a Zarr store"):
        write_array(da.from_array(a), folder, _meta(a), overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep"


def test_unknown_output_suffix(tmp_path):
    a = _array()
    with pytest.raises(SpatimeINRError, match=r"unknown output type '\.png'.*\.ome\.tif"):
        write_array(da.from_array(a), tmp_path / "x.png", _meta(a))


def test_missing_folder(tmp_path):
    a = _array()
    with pytest.raises(SpatimeINRError, match="does not exist"):
        write_array(da.from_array(a), tmp_path / "no" / "x.tif", _meta(a))


def test_imagej_4gb_limit_suggests_ome_or_zarr(tmp_path):
    big = da.zeros((2, 1024, 1024, 1024), dtype=np.float32, chunks=(1, 8, 1024, 1024))  # 8.6 GB
    meta = _meta(np.array([0.0, 1.0]))
    with pytest.raises(SpatimeINRError, match=r"4 GB limit of ImageJ TIFF.*\.ome\.tif.*\.zarr"):
        write_array(big, tmp_path / "big.tif", meta)
    assert _files(tmp_path) == []


def test_not_enough_disk_space(tmp_path, monkeypatch):
    a = _array()

    class Usage:
        free = 1000

    monkeypatch.setattr(write_mod.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(
        SpatimeINRError, match="Not enough disk space.*needs about .* has 1 KB free"
    ):
        write_array(da.from_array(a), tmp_path / "x.ome.tif", _meta(a))
    assert _files(tmp_path) == []


def test_estimate_output_bytes():
    n = int(np.prod(SHAPE))
    assert estimate_output_bytes(SHAPE, "float32", ".ome.tif") >= 4 * n
    assert estimate_output_bytes(SHAPE, "uint16", "a/b/out.zarr") >= 2 * n
    assert estimate_output_bytes(SHAPE, "uint16", ".nii.gz") < estimate_output_bytes(
        SHAPE, "float32", ".nii.gz"
    )
    for s in FORMATS:
        assert s in SUPPORTED_WRITE_SUFFIXES


# -- interruption --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_cancel_leaves_nothing(tmp_path, suffix, monkeypatch):
    monkeypatch.setattr(slabs_mod, "GROUP_BYTES", 1)  # one slab per group
    a = _array()
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(StopRequested):
        write_array(
            da.from_array(a, chunks=(1, 2, 10, 12)),
            tmp_path / f"c{suffix}",
            _meta(a),
            cancel=cancel,
        )
    assert _files(tmp_path) == []


def test_cancel_keeps_the_old_output(tmp_path):
    a = _array()
    p = tmp_path / "keep.ome.tif"
    write_array(da.from_array(a), p, _meta(a))
    before = p.read_bytes()
    with pytest.raises(StopRequested):
        write_array(da.from_array(a + 1), p, _meta(a), overwrite=True, cancel=lambda: True)
    assert p.read_bytes() == before and _files(tmp_path) == ["keep.ome.tif"]


@pytest.mark.parametrize("suffix", [".tif", ".nii.gz", ".zarr"])
def test_error_while_computing_removes_the_temporary(tmp_path, suffix):
    a = _array()

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("renderer crashed")
        return block

    darr = da.from_array(a, chunks=(1, 4, 10, 12)).map_blocks(boom, dtype=np.float32)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_array(darr, tmp_path / f"e{suffix}", _meta(a))
    assert _files(tmp_path) == []


# -- streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_streams_slab_by_slab(tmp_path, suffix, monkeypatch):
    """Writing interleaves with computing: when the first slab is written only the first group
    has been computed, and no computation ever returns more than one group's worth."""
    shape = (6, 4, 16, 16)
    slab = 1 * 2 * 16 * 16 * 4  # bytes of one (1, 2, 16, 16) float32 chunk
    monkeypatch.setattr(slabs_mod, "GROUP_BYTES", 2 * slab)  # two slabs per group
    lock = threading.Lock()
    computed: list[int] = []

    def make(block_info=None):
        loc = block_info[None]["chunk-location"]
        with lock:
            computed.append(loc[0] * 2 + loc[1])
        return np.full(block_info[None]["chunk-shape"], 1 + loc[0] * 2 + loc[1], np.float32)

    darr = da.map_blocks(make, chunks=((1,) * 6, (2, 2), (16,), (16,)), dtype=np.float32)
    at_progress: list[tuple[int, int]] = []

    def progress(done, total):
        with lock:
            at_progress.append((done, len(computed)))

    orig = slabs_mod.dask.compute
    biggest = []

    def spy(*args, **kw):
        out = orig(*args, **kw)
        biggest.append(sum(getattr(o, "nbytes", 0) for o in out))
        return out

    monkeypatch.setattr(slabs_mod.dask, "compute", spy)
    out = write_array(
        darr, tmp_path / f"s{suffix}", _meta(np.array([1.0, 12.0])), progress=progress
    )
    n_blocks = 12
    assert len(computed) == n_blocks  # each block computed exactly once
    first_written = [c for d, c in at_progress if d >= 1][0]
    assert first_written <= 2 < n_blocks
    assert all(c <= d + 2 for d, c in at_progress)  # never more than one group ahead
    if suffix != ".zarr":  # zarr tasks return clip counts, not data
        assert max(biggest) <= 2 * slab < 4 * int(np.prod(shape))
    s = read_stack(out)
    expected = np.repeat(np.arange(1, 13, dtype=np.float32).reshape(6, 2), 2, axis=1)
    np.testing.assert_array_equal(s.data[:, :, 0, 0], expected)
