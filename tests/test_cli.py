"""The CLI end to end on tiny files: train (classical) → render → read back; errors are one line."""

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from conftest import smooth_random
from napari_spatimeinr.cli import main
from napari_spatimeinr.core.coords import make_grid


@pytest.fixture
def timelapse_tif(tmp_path):
    data = (smooth_random((6, 1, 32, 28)) * 10).astype(np.uint16)  # Z=1: a 2D time-lapse
    path = tmp_path / "movie.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZYX", "spacing": 1.0, "unit": "um", "finterval": 20.0},
    )
    return path, data


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_render_info_roundtrip(tmp_path, capsys, timelapse_tif):
    src, data = timelapse_tif
    model = tmp_path / "movie.cubic"
    code, _, err = run(capsys, "train", src, "-o", model, "--method", "cubic")
    assert code == 0, err
    out_path = tmp_path / "movie_t4.tif"
    code, _, err = run(capsys, "render", model, "-o", out_path, "--scale-t", "4", "--scale", "2")
    assert code == 0, err
    assert "Output T=21 Z=2 Y=64 X=56" in err  # the cost is stated before the work
    with tifffile.TiffFile(out_path) as tf:
        got = tf.asarray()
        ij = tf.imagej_metadata
        xres = tf.pages[0].tags["XResolution"].value
    grid = make_grid((6, 1, 32, 28), 4, (2, 2, 2))
    ref = ndimage.map_coordinates(
        data.astype(np.float64), np.meshgrid(*grid.axes, indexing="ij"), order=3, mode="nearest"
    )
    got = got.reshape(ref.shape)
    assert np.abs(got - ref).max() <= 1e-4 * float(np.ptp(data))
    assert ij["finterval"] == pytest.approx(5.0)
    assert ij["spacing"] == pytest.approx(0.5)
    assert xres[1] / xres[0] == pytest.approx(0.125)
    code, out, _ = run(capsys, "info", model, "--json")
    info = json.loads(out)
    assert info["method"] == "cubic" and info["shape_tzyx"] == [6, 1, 32, 28]
    assert info["frame_interval_s"] == 20.0


def test_errors_are_one_line(tmp_path, capsys, timelapse_tif):
    src, _ = timelapse_tif
    code, _, err = run(capsys, "train", tmp_path / "missing.tif", "-o", tmp_path / "m")
    assert code == 2 and err.count("\n") == 1 and "missing.tif" in err
    code, _, err = run(capsys, "train", src, "-o", tmp_path / "m", "--method", "cubic")
    assert code == 0
    code, _, err = run(capsys, "train", src, "-o", tmp_path / "m", "--method", "cubic")
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    for bad in ("0", "-2", "nan", "inf"):
        code, _, err = run(
            capsys, "render", tmp_path / "m", "-o", tmp_path / "o.tif", "--scale-t", bad
        )
        assert code == 2 and "factor" in err and err.count("\n") == 1
    code, _, err = run(capsys, "render", tmp_path / "m", "-o", tmp_path / "o.xyz")
    assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "o.tif").exists()


def test_resume_with_another_input_is_refused_naming_both(tmp_path, capsys, timelapse_tif):
    """--resume used to carry on with the model's own data whatever input was named."""
    src, data = timelapse_tif
    model = tmp_path / "m"
    assert run(capsys, "train", src, "-o", model, "--method", "cubic")[0] == 0
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, data[::-1].copy(), imagej=True, metadata={"axes": "TZYX"})
    before = (model / "meta.json").read_text()
    code, _, err = run(capsys, "train", other, "-o", model, "--method", "cubic", "--resume")
    assert code != 0 and err.count("\n") == 1
    assert "other.tif" in err and "movie.tif" in err
    assert (model / "meta.json").read_text() == before
    code, _, err = run(capsys, "train", src, "-o", model, "--method", "cubic", "--resume")
    assert code == 0, err


def test_volume_cannot_be_resampled_in_time(tmp_path, capsys):
    vol = tmp_path / "vol.tif"
    tifffile.imwrite(vol, (smooth_random((5, 16, 16)) * 10).astype(np.uint16))  # 3D → ZYX
    assert run(capsys, "train", vol, "-o", tmp_path / "v", "--method", "linear")[0] == 0
    code, _, err = run(capsys, "render", tmp_path / "v", "-o", tmp_path / "v.tif", "--scale-t", "2")
    assert code == 2 and "single time point" in err


def test_render_t_range_and_roi_metadata(tmp_path, capsys, timelapse_tif):
    src, _ = timelapse_tif
    model = tmp_path / "m"
    run(capsys, "train", src, "-o", model, "--method", "linear")
    out = tmp_path / "part.ome.tif"
    code, _, err = run(
        capsys,
        "render",
        model,
        "-o",
        out,
        "--scale-t",
        "2",
        "--t-range",
        "1",
        "3",
        "--roi",
        "0",
        "1",
        "4",
        "20",
        "2",
        "10",
    )
    assert code == 0, err
    with tifffile.TiffFile(out) as tf:
        assert tf.series[0].shape[0] == 5  # instants 1, 1.5, 2, 2.5, 3
        assert "output_offset" in tf.ome_metadata or "roi" in tf.ome_metadata


def test_evaluate_writes_the_report_and_shows_one_bar_per_stage(tmp_path, capsys, timelapse_tif):
    src, _ = timelapse_tif
    report = tmp_path / "report.json"
    code, out, err = run(
        capsys, "evaluate", src, "--task", "temporal", "--factor", "2", "--method", "cubic",
        "-o", report,
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads(report.read_text())
    assert {"task", "factor", "results"} <= rep.keys()
    assert {"cubic", "linear", "nearest", "motion", "smoothed"} <= rep["results"].keys()
    assert (tmp_path / "report.csv").is_file() and (tmp_path / "report.png").is_file()
    assert "cubic" in out  # the table
    # each stage opens its own progress bar, named after it, rather than one bar that restarts
    starts = [line.split(":")[0] for line in err.replace("\r", "\n").splitlines() if " 0%" in line]
    for stage in ("baseline", "motion", "train", "render"):
        assert stage in starts, err


def test_a_closed_output_pipe_ends_quietly(tmp_path, capsys, monkeypatch, timelapse_tif):
    """``spatimeinr info M | head`` used to end in 'unexpected error: BrokenPipeError'."""
    src, _ = timelapse_tif
    model = tmp_path / "m"
    assert run(capsys, "train", src, "-o", model, "--method", "cubic")[0] == 0

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    code = main(["info", str(model)])
    err = capsys.readouterr().err
    assert code == 141 and "unexpected error" not in err
