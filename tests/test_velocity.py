"""Motion export: the stored flows as velocities in µm/s (TCZYX), the files, the CLI, the refusals.

A textured stack translated by a known sub-voxel step per frame (oblique, 2D+t and 3D+t, non-unit
voxel size and frame interval) must come back as that velocity within 10 %.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from conftest import run_generator
from napari_spatimeinr import api
from napari_spatimeinr.cli import main
from napari_spatimeinr.core.errors import SpatimeINRError, StopRequested
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.engines.fast.task import load_flows
from napari_spatimeinr.engines.fast.velocity import VelocityField
from napari_spatimeinr.store.model_dir import ModelDir

SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)
VOXEL = (2.0, 0.5, 0.25)  # µm (z, y, x)
INTERVAL = 3.0  # s


def translated(n_t: int, shape: tuple[int, ...], step: tuple[float, ...], sigma=3.0) -> np.ndarray:
    """A smooth random texture moved by ``step`` voxels per frame (TZYX; Z = 1 for 2D)."""
    pad = 8
    rng = np.random.default_rng(0)
    big = ndimage.gaussian_filter(rng.random(tuple(s + 2 * pad for s in shape)), sigma)
    crop = tuple(slice(pad, pad + s) for s in shape)
    frames = [
        ndimage.shift(big, [t * d for d in step], order=3, mode="nearest")[crop] for t in range(n_t)
    ]
    a = np.stack(frames)
    a = ((a - a.min()) / np.ptp(a) * 1000 + 100).astype(np.float32)
    return a if len(shape) == 3 else a[:, None]


def motion_model(tmp_path, shape, step, name="m", n_t=4):
    stack = Stack4D(
        translated(n_t, shape, step), voxel_size=VOXEL, frame_interval=INTERVAL, name="moving"
    )
    path = tmp_path / name
    run_generator(api.train(stack, path, {"steps": 3, "device": "cpu", "params": SMALL}))
    return path


STEP3 = (0.3, 0.6, -0.45)


@pytest.fixture(scope="module")
def model3d(tmp_path_factory):
    """A 3D+t model of a texture moving by :data:`STEP3` voxels per frame (trained once)."""
    return motion_model(tmp_path_factory.mktemp("m3"), (16, 40, 40), STEP3)


def truth(step: tuple[float, ...]) -> np.ndarray:
    """µm/s of a step in voxels per frame: (vz, vy, vx)."""
    s = (0.0, *step) if len(step) == 2 else step
    return np.array([d * v / INTERVAL for d, v in zip(s, VOXEL, strict=True)])


def assert_velocity(field: np.ndarray, step: tuple[float, ...]) -> None:
    expected = truth(step)
    mean = field.mean(axis=(0, 2, 3, 4))
    assert np.linalg.norm(mean - expected) <= 0.1 * np.linalg.norm(expected), (mean, expected)
    assert np.all(np.sign(mean[expected != 0]) == np.sign(expected[expected != 0]))
    if expected[0] == 0:
        assert np.all(field[:, 0] == 0)  # 2D+t: vz is zero, not estimated


@pytest.mark.parametrize(
    "shape, step",
    [
        ((48, 48), (0.6, -0.45)),  # 2D+t, flow on the voxels
        ((64, 64), (1.5, -1.1)),  # 2D+t, flow stored on a grid subsampled by 2 in y and x
        ((16, 40, 40), (0.3, 0.6, -0.45)),  # 3D+t, oblique in z, y and x
        ((16, 40, 40), (-0.4, 0.35, 0.5)),
    ],
)
def test_translation_comes_back_as_its_velocity_in_um_per_s(tmp_path, shape, step):
    path = motion_model(tmp_path, shape, step)
    field = api.motion(path)
    assert field.stride == (2 if shape == (64, 64) else 1)
    assert field.shape == (3, 3, *((1, *shape) if len(shape) == 2 else shape))
    v = np.stack([field.interval(t) for t in range(field.n_intervals)])
    assert v.dtype == np.float32
    assert_velocity(v, step)


def test_forward_direction_at_frame_t_voxels(tmp_path):
    """Entry t is where frame t's content goes: frame t sampled at x equals frame t+1 sampled at
    x + velocity·Δt/voxel (checked on one bright blob that moves, the rest still)."""
    yy, xx = np.indices((40, 40), dtype=np.float32)
    frames = []
    for t in range(3):
        cy, cx = 14 + 2.0 * t, 20 - 1.5 * t
        frames.append(1000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) + 100)
    stack = Stack4D(np.stack(frames)[:, None], voxel_size=VOXEL, frame_interval=INTERVAL)
    path = tmp_path / "blob"
    run_generator(api.train(stack, path, {"steps": 3, "device": "cpu", "params": SMALL}))
    field = api.motion(path)
    v = field.interval(0)
    centre = v[:, 0, 14, 20]  # at the blob's position in frame 0
    np.testing.assert_allclose(centre[1:], truth((2.0, -1.5))[1:], rtol=0.15)
    # arrows where there is signal: on the blob of frame 1 (centre 16, 18.5), not the background
    kept = field.vectors(1, 4, signal_only=True)
    assert 0 < len(kept) < len(field.vectors(1, 4)) / 4
    assert np.all(np.hypot(kept[:, 0, 1] - 16, kept[:, 0, 2] - 18.5) < 8)
    np.testing.assert_allclose(kept[:, 1, 1:].mean(0), (2.0, -1.5), atol=0.4)


def test_flows_not_stored_are_solved_and_the_model_is_not_written(tmp_path):
    path = motion_model(tmp_path, (48, 48), (0.6, -0.45), n_t=5)
    whole = np.stack([api.motion(path).interval(t) for t in range(4)])
    flows = load_flows(ModelDir(path))
    flows = {k: np.array(v) for k, v in flows.items()}  # read whole: rewritten below
    flows["computed"][1:3] = False  # as after a spent flow budget
    flows["gap1"][1:3] = 0
    np.savez(path / "flows.npz", **flows)
    stamp = (path / "flows.npz").stat().st_mtime_ns
    field = api.motion(path)
    assert field.n_unsolved == 2
    again = np.stack([field.interval(t) for t in range(4)])
    # solved again in memory, not rounded to the stored 1/32 voxel (task.FLOW_QUANTUM_VOXELS)
    np.testing.assert_allclose(again, whole, atol=1 / 64 + 1e-3)
    assert np.abs(again - whole).mean() < 2e-3
    assert (path / "flows.npz").stat().st_mtime_ns == stamp
    (path / "flows.npz").unlink()  # training stopped before storing any
    np.testing.assert_allclose(api.motion(path).interval(3), whole[3], atol=1 / 64 + 1e-3)


def test_vectors_are_the_displacement_per_frame_on_a_subsampled_grid(model3d):
    step, path = STEP3, model3d
    field = api.motion(path)
    vec = field.vectors(1, 8)
    assert vec.shape == (16 * 5 * 5, 2, 3)
    assert set(np.unique(vec[:, 0, 1])) == {4, 12, 20, 28, 36}
    mean = vec[:, 1].mean(0)  # voxels per frame interval
    np.testing.assert_allclose(mean, step, atol=0.1 * np.linalg.norm(step))
    z, y, x = vec[7, 0].astype(int)
    np.testing.assert_allclose(
        vec[7, 1] * np.array(VOXEL) / INTERVAL, field.interval(1)[:, z, y, x], rtol=1e-5
    )
    with pytest.raises(SpatimeINRError, match="3 intervals"):
        field.interval(3)


def test_models_without_motion_say_so(tmp_path, small_stack, capsys):
    run_generator(api.train(small_stack, tmp_path / "cubic", {"method": "cubic"}))
    with pytest.raises(SpatimeINRError, match="does not estimate motion.*--preset fast"):
        api.motion(tmp_path / "cubic")
    code = main(["motion", str(tmp_path / "cubic"), "-o", str(tmp_path / "v.ome.tif")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "'cubic' model" in err
    assert not (tmp_path / "v.ome.tif").exists()
    vol = Stack4D(small_stack.data[:1])
    run_generator(api.train(vol, tmp_path / "one", {"steps": 2, "params": SMALL}))
    with pytest.raises(SpatimeINRError, match="single frame"):
        api.motion(tmp_path / "one")


def read_tiff(path):
    with tifffile.TiffFile(path) as tf:
        s = tf.series[0]
        return s.asarray(squeeze=False), s.get_axes(False), tf.ome_metadata, tf.is_ome


@pytest.mark.parametrize("name", ["v.ome.tif", "v.tif", "v.ome.zarr"])
def test_cli_writes_tczyx_with_units_and_provenance(tmp_path, capsys, name, model3d):
    step, path = STEP3, model3d
    field = api.motion(path)
    expected = np.stack([field.interval(t) for t in range(3)])
    out = tmp_path / name
    code = main(["motion", str(path), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Motion T=3 intervals C=3 (vz, vy, vx in µm/s) Z=16 Y=40 X=40" in err  # stated first
    assert "motion: 100%" in err  # progress
    if name.endswith("zarr"):
        import zarr

        group = zarr.open_group(str(out), mode="r")
        data = np.asarray(group["0"])
        ms = group.attrs["ome"]["multiscales"][0]
        assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
        assert ms["axes"][0]["unit"] == "second" and ms["axes"][2]["unit"] == "micrometer"
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert scale == pytest.approx([INTERVAL, 1.0, *VOXEL])
        labels = [c["label"] for c in group.attrs["ome"]["omero"]["channels"]]
        assert labels == ["vz", "vy", "vx"]
        prov = group.attrs["spatimeinr"]
    else:
        data, axes, ome, is_ome = read_tiff(out)
        assert is_ome and axes.startswith("TCZYX")
        data = data.reshape(data.shape[:5])
        assert 'PhysicalSizeZ="2.0"' in ome and 'PhysicalSizeX="0.25"' in ome
        assert 'TimeIncrement="3.0"' in ome and 'TimeIncrementUnit="s"' in ome
        assert 'DimensionOrder="XYZCT"' in ome
        assert all(f'Name="{c}"' in ome for c in ("vz", "vy", "vx"))
        with tifffile.TiffFile(out) as tf:
            desc = tf.ome_metadata.split("<Description>")[1].split("</Description>")[0]
        import html

        prov = json.loads(html.unescape(desc))["spatimeinr"]
    assert data.shape == (3, 3, 16, 40, 40) and data.dtype == np.float32
    np.testing.assert_array_equal(data, expected)
    assert_velocity(data, step)
    assert prov["axes"] == "TCZYX" and prov["channels"] == ["vz", "vy", "vx"]
    assert prov["unit"] == "µm/s" and prov["method"] == "spatimeinr" and prov["preset"] == "fast"
    assert prov["frame_interval_s"] == INTERVAL and prov["source_sha256"] is not None
    # never overwritten without --overwrite
    code = main(["motion", str(path), "-o", str(out)])
    assert code != 0 and "--overwrite" in capsys.readouterr().err
    assert main(["motion", str(path), "-o", str(out), "--overwrite", "-q"]) == 0


def test_bad_suffix_memory_and_cancel_leave_no_file(tmp_path, capsys, monkeypatch):
    path = motion_model(tmp_path, (48, 48), (0.6, -0.45))
    code = main(["motion", str(path), "-o", str(tmp_path / "v.nii.gz")])
    assert code != 0 and ".ome.zarr" in capsys.readouterr().err
    calls = []
    with pytest.raises(StopRequested):
        api.export_motion(
            path,
            tmp_path / "v.ome.tif",
            cancel=lambda: len(calls) > 1,
            progress=lambda d, n: calls.append(d),
        )
    assert list(tmp_path.glob("*v.ome.tif*")) == []
    field = VelocityField(path)
    assert api.export_motion(field, tmp_path / "v.zarr").is_dir()
    monkeypatch.setattr("napari_spatimeinr.core.resources.memory_limit", lambda: 1000)
    with pytest.raises(SpatimeINRError, match="Not enough memory: exporting the motion"):
        api.export_motion(path, tmp_path / "w.ome.tif")
    assert not list(tmp_path.glob("*w.ome.tif*"))
