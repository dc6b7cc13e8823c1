"""One model for all channels (issue 23): a TCZYX stack trains one model with one motion, renders
and exports keep the channel axis with the channels' names, ``--channel N`` selects one."""

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_spatimeinr import api
from napari_spatimeinr.cli import main
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.normalize import Normalization
from napari_spatimeinr.data.stack import ChannelStack
from napari_spatimeinr.data.synthetic import make_two_channel_timelapse
from napari_spatimeinr.io.read import read_channels, read_stack
from napari_spatimeinr.store.model_dir import ModelDir, channel_dirs

SHAPE = (5, 3, 24, 24)  # T Z Y X: a tiny 3D+t stack
#: a tiny refiner and no z decoder: what is tested is the layout, not the quality
SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)


@pytest.fixture(scope="module")
def two():
    return make_two_channel_timelapse(SHAPE, n_nuclei=3, seed=1)


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory, two):
    """A fast-preset model of both channels (a few steps: what is tested is the layout)."""
    path = tmp_path_factory.mktemp("ch") / "two.spatimeinr"
    records = list(api.train(two, path, {"steps": 4, "device": "cpu", "params": SMALL}))
    assert records[-1].done and sum(p.done for p in records) == 1
    return path


@pytest.fixture
def two_tif(tmp_path, two):
    """The stack as an ImageJ hyperstack TZCYX (uint16, no channel names)."""
    data = np.stack([c.data for c in two.channels], axis=2).astype(np.uint16)
    path = tmp_path / "two.tif"
    tifffile.imwrite(
        path, data, imagej=True, metadata={"axes": "TZCYX", "finterval": 30.0, "spacing": 1.0}
    )
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_model_directory_layout_and_one_motion(fast_model, two):
    """One flows.npz (the top one) for both channels, estimated from the mean of the normalized
    channels, and each channel's renderer uses it."""
    from napari_spatimeinr.engines.fast import task
    from napari_spatimeinr.engines.fast.render import MotionRenderer

    root = ModelDir(fast_model)
    dirs = channel_dirs(root)
    assert [d.path for d in dirs] == [fast_model, fast_model / "channels" / "1"]
    assert root.meta["channel_names"] == ["nuclei", "membrane"]
    assert root.meta["motion_from"] == "mean"
    assert sorted(p.relative_to(fast_model).as_posix() for p in fast_model.rglob("flows.npz")) == [
        "flows.npz"
    ]
    for d in dirs:  # each channel is a complete single-channel model of its own channel
        assert (d.path / "model.pt").is_file()
        raw = Normalization.from_dict(d.meta["normalization"]).invert(np.asarray(d.input))
        k = d.meta["channel"]["index"]
        np.testing.assert_allclose(raw, two.channels[k].data, rtol=1e-4, atol=1e-2)
    stored = task.load_flows(root)
    assert np.array_equal(np.asarray(task.load_flows(dirs[1])["gap1"]), np.asarray(stored["gap1"]))
    mean = (np.asarray(dirs[0].input) + np.asarray(dirs[1].input)) / 2
    np.testing.assert_allclose(task.motion_source(dirs[1]), mean, atol=1e-6)

    def solve(data):
        gen = task.compute_flows(np.asarray(data, np.float32), lambda: False)
        try:
            while True:
                next(gen)
        except StopIteration as end:
            return end.value["gap1"].astype(np.float32)

    np.testing.assert_allclose(np.asarray(stored["gap1"], np.float32), solve(mean), atol=2e-2)
    own = solve(dirs[1].input)  # what channel 1 alone would have moved by: not what is used
    assert np.abs(own - np.asarray(stored["gap1"], np.float32)).max() > 0.05
    # a channel's refiner learns from its own flow (solved for training, then deleted)
    assert not list(fast_model.rglob("train_flows.npz"))
    gen = task.ensure_flows(dirs[1], lambda: False, "cpu", flows_file="train_flows.npz")
    try:
        while True:
            next(gen)
    except StopIteration as end:
        trained_on = np.asarray(end.value["gap1"], np.float32)
    np.testing.assert_allclose(trained_on, own, atol=2e-2)
    (dirs[1].path / "train_flows.npz").unlink()
    r1 = MotionRenderer(dirs[1], "cpu")
    assert np.array_equal(r1.flows, stored["gap1"])
    # the motion export reads the one motion: shape (T-1, 3, Z, Y, X)
    v = api.motion(fast_model, device="cpu").interval(0)
    assert v.shape == (3, *SHAPE[1:])


def test_each_channel_its_refiner_on_the_one_motion(fast_model):
    """Each channel trains its own refiner, ceil(2 × steps / N) steps (the whole model costs
    ≤ 1.5× one channel's), and its z decoder ceil(S / N) steps."""
    root = ModelDir(fast_model)
    assert root.config.steps == 4  # the whole model's configuration, as given
    dirs = channel_dirs(root)
    assert [d.meta["train_steps"] for d in dirs] == [4, 4]  # ceil(4 * 2 / 2)
    assert root.meta["channel_train_steps"] == 8
    assert all(d.meta["heldout_psnr"] is not None for d in dirs)


@pytest.fixture
def shared_refiner(monkeypatch):
    from napari_spatimeinr.engines.fast import channels

    monkeypatch.setattr(channels, "REFINER", "shared")


def test_one_shared_refiner_for_all_channels(tmp_path, two, shared_refiner):
    """The shared mode: one refiner trained on crops of all channels, its weights folded into each
    channel's plain refiner (the channels differ in their own scale and shift)."""
    import torch

    from napari_spatimeinr.engines.fast.refiner import Refiner

    path = tmp_path / "m.spatimeinr"
    records = list(api.train(two, path, {"steps": 4, "device": "cpu", "params": SMALL}))
    assert "one refiner for 2 channels" in records[-1].message
    root = ModelDir(path)
    weights = []
    for k, d in enumerate(channel_dirs(root)):
        assert d.meta["train_steps"] == 5  # ceil(4 * 1.25): one training for all channels
        rec = d.meta["shared_refiner"]
        assert (rec["channels"], rec["channel"]) == (2, k)
        net = Refiner(SMALL["refine_width"], SMALL["refine_depth"], 3)
        net.load_state_dict(torch.load(d.path / "model.pt", weights_only=True))  # a plain refiner
        weights.append(net.state_dict())
    assert not (path / "checkpoint.pt").exists()  # the shared state is not a channel's
    assert not torch.equal(weights[0]["body.0.weight"], weights[1]["body.0.weight"])
    assert api.render(path, scale_t=2).compute().shape == (9, 2, *SHAPE[1:])


def test_a_channel_the_shared_refiner_hurts_keeps_the_identity(
    tmp_path, two, monkeypatch, shared_refiner
):
    """Each channel keeps the shared weights only where they beat its identity (motion-compensated
    interpolation) on its held-out voxels."""
    import torch

    from napari_spatimeinr.engines.fast import task

    calls = []

    def scores(self, net):  # channel 1 worse with the trained weights than without
        calls.append(net)
        untrained = net is None or len(calls) <= 2  # the identity, then the untrained network
        return [20.0, 20.0] if untrained else [22.0, 19.0]

    monkeypatch.setattr(task.MotionTask, "validate_channels", scores)
    path = tmp_path / "m.spatimeinr"
    records = list(api.train(two, path, {"steps": 4, "device": "cpu", "params": SMALL}))
    assert "membrane identity" in records[-1].message
    dirs = channel_dirs(ModelDir(path))
    last = "body.2.weight"
    w0 = torch.load(dirs[0].path / "model.pt", weights_only=True)[last]
    w1 = torch.load(dirs[1].path / "model.pt", weights_only=True)[last]
    assert w0.abs().sum() > 0 and w1.abs().sum() == 0  # channel 1: the untrained residual, zero
    assert dirs[1].meta["shared_refiner"]["kept"] is False
    assert dirs[1].meta["heldout_psnr"] == 20.0


def test_render_keeps_the_channel_axis(fast_model):
    plan = api.plan_render(fast_model, scale_t=2)
    arr = api.render_plan(plan)
    assert plan.out_shape == arr.shape == (9, 2, *SHAPE[1:])
    assert plan.meta.channel_names == ("nuclei", "membrane")
    assert plan.meta.channel_colors == ("green", "magenta")
    one = api.render_plan(api.plan_render(fast_model, scale_t=2, channel=1))
    assert one.shape == (9, *SHAPE[1:])
    full = arr.compute()
    np.testing.assert_array_equal(one.compute(), full[:, 1])
    assert not np.allclose(full[:, 0], full[:, 1])
    unc = api.render_plan(plan, uncertainty=True)
    assert unc.shape == arr.shape
    with pytest.raises(SpatimeINRError, match=r"--channel 2 is out of range.*channels 0\.\.1"):
        api.plan_render(fast_model, channel=2)


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".zarr"])
def test_writers_keep_channels_and_names(fast_model, tmp_path, capsys, suffix):
    out = tmp_path / f"two_t2{suffix}"
    code, _, err = run(capsys, "render", fast_model, "-o", out, "--scale-t", "2")
    assert code == 0, err
    assert "C=2 (nuclei, membrane)" in err
    want = api.render(fast_model, scale_t=2).compute()
    if suffix == ".zarr":
        group = zarr.open_group(str(out), mode="r")
        got = np.asarray(group["0"])
        ome = group.attrs["ome"]
        assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["t", "c", "z", "y", "x"]
        assert [c["label"] for c in ome["omero"]["channels"]] == ["nuclei", "membrane"]
        assert [c["color"] for c in ome["omero"]["channels"]] == ["00FF00", "FF00FF"]
    else:
        with tifffile.TiffFile(out) as tf:
            series = tf.series[0]
            got = series.asarray()
            if suffix == ".tif":  # ImageJ hyperstack: TZCYX, a composite with one LUT a channel
                assert series.axes == "TZCYX"
                assert tf.imagej_metadata["Labels"][:2] == ["nuclei", "membrane"]
                assert len(tf.imagej_metadata["LUTs"]) == 2
                got = got.transpose(0, 2, 1, 3, 4)
            else:
                assert series.axes == "TCZYX"
                assert 'Name="nuclei"' in tf.ome_metadata
                assert 'Name="membrane"' in tf.ome_metadata
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    back = read_channels(out)
    assert isinstance(back, ChannelStack) and back.names == ["nuclei", "membrane"]
    np.testing.assert_allclose(back.channels[1].data, want[:, 1], rtol=1e-6, atol=1e-4)
    with pytest.raises(SpatimeINRError, match="2 channels.*--channel N"):
        read_stack(out)  # one channel is still asked for where one stack is read


def test_uint16_export_of_channels(fast_model, tmp_path, capsys):
    out = tmp_path / "u16.ome.tif"
    code, _, err = run(capsys, "render", fast_model, "-o", out, "--dtype", "uint16")
    assert code == 0, err
    back = read_channels(out)
    want = api.render(fast_model).compute()
    for c in range(2):
        np.testing.assert_allclose(back.channels[c].data, want[:, c], atol=0.02 * np.ptp(want))


def test_cli_channel_selects_one_and_refusals(fast_model, tmp_path, capsys):
    out = tmp_path / "c1.ome.tif"
    code, _, err = run(capsys, "render", fast_model, "-o", out, "--channel", "1")
    assert code == 0, err
    got = tifffile.imread(out)
    np.testing.assert_allclose(got, api.render(fast_model).compute()[:, 1], rtol=1e-6, atol=1e-4)
    nii = tmp_path / "two.nii.gz"
    code, _, err = run(capsys, "render", fast_model, "-o", nii)
    assert code == 2 and len(err.splitlines()) == 1
    assert "NIfTI holds x, y, z, t and no channel axis" in err and "--channel N" in err
    assert not nii.exists()
    code, _, err = run(capsys, "render", fast_model, "-o", tmp_path / "c5.tif", "--channel", "5")
    assert code == 2 and "out of range" in err
    code, _, err = run(capsys, "render", fast_model, "-o", nii, "--channel", "0")  # one: NIfTI
    assert code == 0, err


def test_cli_trains_all_channels_or_one(two_tif, tmp_path, capsys):
    model = tmp_path / "all.cubic"
    code, _, err = run(capsys, "train", two_tif, "-o", model, "--method", "cubic")
    assert code == 0, err
    assert "2 channels (C0, C1): one model for all of them" in err
    meta = json.loads((model / "meta.json").read_text())
    assert meta["channel_dirs"] == [".", "channels/1"] and meta["channel_names"] == ["C0", "C1"]
    assert meta["shape"] == list(SHAPE)
    code, out, _ = run(capsys, "info", model, "--json")
    info = json.loads(out)
    assert [c["name"] for c in info["channels"]] == ["C0", "C1"]
    assert info["channels"][1]["dir"] == "channels/1"
    code, _, err = run(capsys, "train", two_tif, "-o", model, "--method", "cubic", "--resume")
    assert code == 2 and "cannot be resumed yet" in err
    one = tmp_path / "one.cubic"
    code, _, err = run(capsys, "train", two_tif, "-o", one, "--method", "cubic", "--channel", "1")
    assert code == 0, err
    meta1 = json.loads((one / "meta.json").read_text())
    assert "channel_dirs" not in meta1 and not (one / "channels").exists()
    a = api.render(model).compute()
    b = api.render(one).compute()
    assert a.shape == (*SHAPE[:1], 2, *SHAPE[1:]) and b.shape == SHAPE
    np.testing.assert_allclose(a[:, 1], b, rtol=1e-5, atol=1e-3)
    code, _, err = run(capsys, "train", two_tif, "-o", tmp_path / "p", "--preset", "paper")
    assert code == 2 and len(err.splitlines()) == 1 and "needs the fast preset" in err
    code, _, err = run(capsys, "train", two_tif, "-o", tmp_path / "q", "--motion-channel", "2")
    assert code == 2 and len(err.splitlines()) == 1 and "--motion-channel 2 is out of range" in err


def test_motion_channel_is_recorded(two, tmp_path):
    path = tmp_path / "m1"
    for _ in api.train(two, path, {"steps": 2, "params": SMALL}, motion_channel=1):
        pass
    from napari_spatimeinr.engines.fast import task

    root = ModelDir(path)
    assert root.meta["motion_from"] == 1
    np.testing.assert_array_equal(task.motion_source(root), np.asarray(channel_dirs(root)[1].input))


def test_apply_needs_a_channel(fast_model, two_tif, tmp_path, capsys):
    code, _, err = run(capsys, "render", fast_model, "--input", two_tif, "-o", tmp_path / "x.tif")
    assert code == 2 and "choose it with --channel N" in err
    code, _, err = run(
        capsys,
        "render",
        fast_model,
        "--input",
        two_tif,
        "-o",
        tmp_path / "x.tif",
        "--channel",
        "1",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert code == 0, err
    assert tifffile.imread(tmp_path / "x.tif").shape == SHAPE


def test_evaluate_reports_each_channel(two):
    from napari_spatimeinr.workflows.evaluate import run_evaluation

    items = list(run_evaluation(two, "temporal", 2, method="cubic", baselines=["linear", "motion"]))
    result = items[-1]
    report = result.report
    assert report["channel_names"] == ["nuclei", "membrane"]
    assert [c["name"] for c in report["channels"]] == ["nuclei", "membrane"]
    for c, entry in enumerate(report["channels"]):
        assert set(entry["results"]) == {"cubic", "linear", "motion"}
        ch = result.channels[c]
        assert ch.truth.shape == SHAPE and ch.reconstructions["cubic"].shape == SHAPE
        np.testing.assert_allclose(ch.truth, two.channels[c].data)
    assert report["channels"][0]["results"] != report["channels"][1]["results"]


def test_a_stopped_training_still_renders_every_channel(two, tmp_path):
    """Stop during channel 0's refiner: every channel is written (its best weights so
    far), the model renders, and the stopped training is not calibrated."""
    stopped = []

    def stop():
        return bool(stopped)

    path = tmp_path / "stopped"
    records = []
    for p in api.train(two, path, {"steps": 20000, "params": SMALL}, stop=stop):
        records.append(p)
        if "refiner: training" in p.message:  # the first record: half a second in
            stopped.append(True)
    assert records[-1].done
    assert ModelDir(path).meta["train_steps"] < 16000  # channel 0 stopped early
    assert ModelDir(path / "channels" / "1").meta["train_steps"] == 0  # channel 1 at once
    assert "stopped" in records[-1].message
    assert (path / "channels" / "1" / "model.pt").is_file()
    assert api.render(path, scale_t=2).compute().shape == (9, 2, *SHAPE[1:])
