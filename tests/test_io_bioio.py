"""Vendor files through bioio (the optional ``formats`` extra): the reader on OME-TIFFs written by
bioio's own writer (skipped without the extra), and the one line that says what to install when
the extra is absent (simulated by hiding the import)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.io.formats import SUPPORTED_READ_SUFFIXES, VENDOR_SUFFIXES
from napari_spatimeinr.io.read import read_stack
from napari_spatimeinr.io.read_bioio import FORMATS_INSTALL

VENDOR = [".czi", ".nd2", ".lif"]


def _vendor_file(tmp_path, suffix):
    p = tmp_path / f"movie{suffix}"
    p.write_bytes(b"not a real microscope file")
    return p


@pytest.fixture
def no_extra(monkeypatch):
    """bioio not installed (an import of it fails), whether or not it is here."""
    monkeypatch.setitem(sys.modules, "bioio", None)


# -- without the extra: one line saying what to install --------------------------------------------


def test_vendor_suffixes_are_known():
    assert VENDOR_SUFFIXES == tuple(VENDOR)
    assert set(VENDOR) <= set(SUPPORTED_READ_SUFFIXES)
    assert FORMATS_INSTALL == 'pip install "napari-spatimeinr[formats]"'


@pytest.mark.parametrize("suffix", VENDOR)
def test_without_extra_one_line_says_what_to_install(tmp_path, no_extra, suffix):
    with pytest.raises(SpatimeINRError) as e:
        read_stack(_vendor_file(tmp_path, suffix))
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(FORMATS_INSTALL), msg
    assert f"movie{suffix}" in msg and "bioio is not installed" in msg


def test_without_the_plugin_names_it(tmp_path, monkeypatch):
    """bioio present but not the file's plugin (e.g. a bare ``pip install bioio``)."""
    monkeypatch.setitem(sys.modules, "bioio", types.ModuleType("bioio"))
    monkeypatch.setitem(sys.modules, "bioio_nd2", None)
    with pytest.raises(SpatimeINRError, match=r"bioio-nd2 is not installed\): pip install"):
        read_stack(_vendor_file(tmp_path, ".nd2"))


def test_cli_train_without_extra_exits_2_with_one_line(tmp_path, no_extra, capsys):
    from napari_spatimeinr.cli import main

    src = _vendor_file(tmp_path, ".czi")
    code = main(["train", str(src), "-o", str(tmp_path / "m"), "--method", "cubic"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and FORMATS_INSTALL in err, err
    assert not (tmp_path / "m").exists()


def test_api_without_extra(tmp_path, no_extra):
    from napari_spatimeinr import api

    with pytest.raises(SpatimeINRError, match=r"\[formats\]"):
        api.read(_vendor_file(tmp_path, ".lif"))


def test_napari_reader_claims_vendor_files_and_says_what_to_install(tmp_path, no_extra):
    from napari_spatimeinr._reader import get_reader

    path = str(_vendor_file(tmp_path, ".nd2"))
    reader = get_reader(path)
    assert reader is not None  # claimed, so the user sees why it does not open
    with pytest.raises(SpatimeINRError, match=r"pip install \"napari-spatimeinr\[formats\]\"$"):
        reader(path)


def test_unknown_reader_refused_other_formats_keep_theirs(tmp_path, monkeypatch, no_extra):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    with pytest.raises(SpatimeINRError, match="choose auto or bioio"):
        read_stack(p, reader="aicsimageio")
    monkeypatch.setenv("SPATIMEINR_READER", "bioio")  # for OME files; .npy keeps its reader
    assert read_stack(p).shape == (1, 2, 3, 4)
    ome = tmp_path / "a.ome.tif"
    ome.write_bytes(b"II*\x00")
    with pytest.raises(SpatimeINRError, match=r"\[formats\]"):  # an OME-TIFF now goes to bioio
        read_stack(ome)


# -- with the extra: bioio's own OME-TIFF writer, read through the bioio path ------------------


@pytest.fixture
def bioio_ome_tiff(tmp_path):
    """A TCZYX uint16 OME-TIFF made by bioio's writer: two named channels, z in nm, dt in ms."""
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    from bioio.writers import OmeTiffWriter
    from bioio_base.types import PhysicalPixelSizes

    data = np.random.default_rng(1).integers(0, 4000, (3, 2, 4, 12, 10), dtype=np.uint16)
    ome = OmeTiffWriter.build_ome(
        [data.shape],
        [data.dtype],
        dimension_order=["TCZYX"],
        channel_names=[["GFP", "mCherry"]],
        physical_pixel_sizes=[PhysicalPixelSizes(600.0, 0.13, 0.12)],
    )
    px = ome.images[0].pixels
    px.physical_size_z_unit = "nm"  # bioio hands the raw 600: the reader converts
    px.time_increment, px.time_increment_unit = 2500.0, "ms"
    path = tmp_path / "cells.ome.tif"
    OmeTiffWriter.save(data, path, dim_order="TCZYX", ome_xml=ome)
    return path, data


def test_bioio_reads_metadata_and_a_channel(bioio_ome_tiff):
    path, data = bioio_ome_tiff
    s = read_stack(path, channel=1, reader="bioio")
    assert s.extra["metadata"] == "bioio (bioio-ome-tiff)"
    assert s.shape == (3, 4, 12, 10) and s.source_axes == "TCZYX"
    np.testing.assert_array_equal(s.data, data[:, 1])
    assert s.voxel_size == pytest.approx((0.6, 0.13, 0.12))
    assert s.frame_interval == pytest.approx(2.5)
    assert s.extra["defaults"] == [] and s.extra["source_dtype"] == "uint16"
    assert s.extra["channels"] == 2 and s.extra["channel_names"] == ["GFP", "mCherry"]


def test_bioio_keeps_the_channel_refusal(bioio_ome_tiff):
    path, _ = bioio_ome_tiff
    with pytest.raises(SpatimeINRError, match=r"2 channels .*choose one with --channel N"):
        read_stack(path, reader="bioio")


def test_bioio_agrees_with_the_own_reader(bioio_ome_tiff, monkeypatch):
    """OME-TIFF keeps this package's reader by default; $SPATIMEINR_READER=bioio switches."""
    path, _ = bioio_ome_tiff
    own = read_stack(path, channel=0)
    assert own.extra["metadata"] != "bioio (bioio-ome-tiff)"
    monkeypatch.setenv("SPATIMEINR_READER", "bioio")
    via = read_stack(path, channel=0)
    assert via.extra["metadata"] == "bioio (bioio-ome-tiff)"
    np.testing.assert_array_equal(via.data, own.data)
    assert via.voxel_size == pytest.approx(own.voxel_size)
    assert via.frame_interval == pytest.approx(own.frame_interval)


def test_bioio_colour_samples_are_the_channels(tmp_path):
    """bioio's RGB axis S (beside a channel axis of length 1) is read as the channel axis."""
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    from bioio.writers import OmeTiffWriter

    data = np.random.default_rng(4).integers(0, 255, (2, 1, 8, 9, 3), dtype=np.uint8)
    path = tmp_path / "rgb.ome.tif"
    OmeTiffWriter.save(data, path, dim_order="TZYXS")
    s = read_stack(path, channel=2, reader="bioio")
    assert s.shape == (2, 1, 8, 9) and s.extra["channels"] == 3
    np.testing.assert_array_equal(s.data[:, 0], data[:, 0, ..., 2])


@pytest.mark.parametrize("suffix", [".ome.tif", ".zarr"])
def test_bioio_reads_our_own_uint16_export(tmp_path, suffix):
    """Our writer's uint16 OME-TIFF / OME-Zarr maps a float range: bioio's path undoes it (and takes
    the origin) as ours does."""
    pytest.importorskip("bioio")
    pytest.importorskip({".ome.tif": "bioio_ome_tiff", ".zarr": "bioio_ome_zarr"}[suffix])
    from napari_spatimeinr.io.meta import OutputMeta
    from napari_spatimeinr.io.write import write_array

    a = np.random.default_rng(2).random((2, 3, 10, 12)).astype(np.float32)
    meta = OutputMeta(
        voxel_size=(1.5, 0.26, 0.0655),
        frame_interval=4.5,
        origin=(9.0, 0.0, 3.0, 0.5),
        name="tiny",
        provenance={"version": "test"},
        intensity_range=(float(a.min()), float(a.max())),
        source_dtype="float32",
    )
    out = write_array(a, tmp_path / f"u{suffix}", meta, "uint16")
    own, via = read_stack(out), read_stack(out, reader="bioio")
    np.testing.assert_allclose(via.data, own.data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(via.data, a, atol=(a.max() - a.min()) / 65535)
    assert via.voxel_size == pytest.approx((1.5, 0.26, 0.0655))
    assert via.frame_interval == pytest.approx(4.5)
    assert via.extra["provenance"] is not None and via.origin == pytest.approx(own.origin)
    assert via.origin == pytest.approx((9.0, 0.0, 3.0, 0.5))


@pytest.mark.parametrize("suffix", VENDOR)
def test_vendor_suffix_goes_through_its_plugin(tmp_path, suffix, caplog):
    """With the extra, a damaged vendor file reaches its bioio plugin and is refused in one line
    (with the plugin's reason; bioio's own log lines are not printed besides)."""
    pytest.importorskip("bioio")
    plugin = {".czi": "bioio_czi", ".nd2": "bioio_nd2", ".lif": "bioio_lif"}[suffix]
    pytest.importorskip(plugin)
    with pytest.raises(SpatimeINRError) as e:
        read_stack(_vendor_file(tmp_path, suffix))
    msg = str(e.value)
    assert "\n" not in msg and f"with {plugin.replace('_', '-')} (" in msg, msg
    assert "not supported" in msg or "Not enough data" in msg, msg  # the plugin's reason
    assert not [r for r in caplog.records if r.name.startswith("bioio")]


@pytest.fixture
def czi_file(tmp_path):
    """A real Zeiss CZI (TCZYX uint16, two named channels, scaling in m) made by pylibCZIrw's
    writer, which the extra installs with bioio-czi."""
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_czi")
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    data = np.random.default_rng(3).integers(0, 4000, (3, 2, 4, 12, 10), dtype=np.uint16)
    path = tmp_path / "embryo.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as w:
        for t, c, z in np.ndindex(*data.shape[:3]):
            w.write(data=data[t, c, z][..., None], plane={"T": t, "C": c, "Z": z})
        w.write_metadata(
            document_name="embryo",
            channel_names={0: "GFP", 1: "mCherry"},
            scale_x=0.12e-6,
            scale_y=0.13e-6,
            scale_z=0.6e-6,
        )
    return path, data


def test_czi_through_the_vendor_path(czi_file):
    path, data = czi_file
    s = read_stack(path, channel=1)
    assert s.extra["metadata"] == "bioio (bioio-czi)"
    np.testing.assert_array_equal(s.data, data[:, 1])
    assert s.voxel_size == pytest.approx((0.6, 0.13, 0.12))
    assert s.extra["channel_names"] == ["GFP", "mCherry"]
    assert s.extra["defaults"] == ["frame_interval"]  # the writer stores no time step
    assert read_stack(path, channel=0, frame_interval=20.0).frame_interval == 20.0


def test_cli_trains_on_a_czi(czi_file, tmp_path, capsys):
    import json

    from napari_spatimeinr.cli import main

    path, _ = czi_file
    model = tmp_path / "embryo.cubic"
    code = main(["train", str(path), "-o", str(model), "--method", "cubic", "--channel", "0"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((model / "meta.json").read_text())
    assert meta["shape"] == [3, 4, 12, 10]
    assert meta["voxel_size"] == pytest.approx([0.6, 0.13, 0.12])
    # without --channel: one model of both channels, named as in the file
    assert main(["train", str(path), "-o", str(tmp_path / "m2"), "--method", "cubic"]) == 0
    meta = json.loads((tmp_path / "m2" / "meta.json").read_text())
    assert meta["channel_names"] == ["GFP", "mCherry"]
    assert meta["channel_dirs"] == [".", "channels/1"]


def test_first_scene_read_and_the_others_named(tmp_path, capsys, monkeypatch):
    """A file of several scenes (positions): the first is read and the CLI says so."""
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    from bioio.writers import OmeTiffWriter

    from napari_spatimeinr.cli import main

    rng = np.random.default_rng(5)
    scenes = [rng.integers(0, 900, (3, 1, 2, 8, 9), dtype=np.uint16) for _ in range(2)]
    path = tmp_path / "plate.ome.tif"
    OmeTiffWriter.save(scenes, path, dim_order=["TCZYX", "TCZYX"])
    s = read_stack(path, reader="bioio")
    np.testing.assert_array_equal(s.data, scenes[0][:, 0])
    assert any("2 scenes" in n and "the first" in n for n in s.extra["notes"]), s.extra["notes"]
    model = tmp_path / "plate.cubic"
    monkeypatch.setenv("SPATIMEINR_READER", "bioio")
    assert main(["train", str(path), "-o", str(model), "--method", "cubic"]) == 0
    assert "Note (plate): the file holds 2 scenes" in capsys.readouterr().err
