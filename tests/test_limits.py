"""The limits gate (issue 13): exact shapes without allocation, refusals that name the number and
the limit, writable targets named as given, incomplete TIFFs refused."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_spatimeinr import api, limits
from napari_spatimeinr.core import resources
from napari_spatimeinr.core.coords import grid_shape, make_grid
from napari_spatimeinr.core.errors import LimitError, SpatimeINRError
from napari_spatimeinr.io.read import read_stack
from napari_spatimeinr.workflows import jobs


def test_grid_shape_matches_make_grid():
    rng = np.random.default_rng(1)
    factors = [1, 0.5, 2, 3, 1.7, 0.3, 4.25, 0.05, 1.37, 7]
    for _ in range(1500):
        shape = tuple(int(v) for v in rng.integers(1, 40, 4))
        st = float(rng.choice(factors)) if shape[0] > 1 else 1.0
        szyx = tuple(float(rng.choice(factors)) for _ in range(3))
        t_range = None
        if rng.random() < 0.5:
            a = float(rng.choice(np.arange(0, shape[0], 0.25)))
            b = float(rng.choice(np.arange(a, shape[0] - 0.99, 0.25))) if a <= shape[0] - 1 else a
            t_range = (a, b) if b <= shape[0] - 1 else None
        roi = None
        if rng.random() < 0.5:
            roi = []
            for n in shape[1:]:
                lo = int(rng.integers(0, n))
                roi += [lo, int(rng.integers(lo + 1, n + 1))]
            roi = tuple(roi)
        try:
            grid = make_grid(shape, st, szyx, t_range, roi)
        except SpatimeINRError as err:
            with pytest.raises(SpatimeINRError, match=str(err)[:20]):
                grid_shape(shape, st, szyx, t_range, roi)
            continue
        assert grid_shape(shape, st, szyx, t_range, roi) == (grid.shape, grid.full_shape)


def test_absurd_render_is_measured_not_built():
    cost = limits.render_cost((6, 4, 16, 16), 1.0, (1e6, 1e6, 1e6))
    assert cost.shape == (6, 4_000_000, 16_000_000, 16_000_000)
    with pytest.raises(LimitError, match=r"24\.6 ZB as float32.*over the limit of 1,000,000"):
        limits.check_plan(cost)
    assert cost.n_chunks > 1e15


def test_export_refusals_name_number_and_limit(tmp_path, monkeypatch):
    cost = limits.render_cost((6, 4, 16, 16), 1e6, (1.0, 1.0, 1.0))
    with pytest.raises(LimitError, match=r"30\.7 GB.*4 GB limit of ImageJ TIFF"):
        limits.check_export(cost, tmp_path / "out.tif")
    monkeypatch.setattr(resources, "free_disk", lambda path: 10**9)
    with pytest.raises(LimitError, match=r"needs about 30\.7 GB but .* has 1 GB free.*--force"):
        limits.check_export(cost, tmp_path / "out.ome.tif")
    limits.check_export(cost, tmp_path / "out.ome.tif", force=True)  # disk only: memory is fine
    monkeypatch.setattr(resources, "available_memory", lambda: 800 * 2**20)
    monkeypatch.setattr(resources, "memory_margin", lambda: 512 * 2**20)
    with pytest.raises(LimitError, match=r"Not enough memory: rendering .* but only 302 MB"):
        limits.check_export(cost, tmp_path / "out.ome.tif", force=True)
    wide = limits.render_cost((4, 1, 4, 4), 1.0, (1.0, 2500, 2500), chunk_mb=1e5)  # 1.6 GB
    with pytest.raises(LimitError, match=r"smallest part .* all 10,000 x voxels, 1.6 GB"):
        limits.check_export(wide, tmp_path / "out.zarr", force=True)
    assert not list(tmp_path.iterdir())  # the probes left nothing


def test_view_refuses_huge_planes_and_graphs():
    limits.check_view(limits.render_cost((6, 4, 16, 16), 2.0, (2.0, 2.0, 2.0)))
    n = 160_000
    plane = limits.RenderCost((1, 1, n, n), (1, 1, n, n), (1, 1, 6, n), -(-n // 6), 1)
    with pytest.raises(LimitError, match=r"160,000 × 160,000 .* a layer can show"):
        limits.check_view(plane)


def test_plan_render_refuses_before_allocating(tmp_path, small_stack):
    model = tmp_path / "m"
    list(api.train(small_stack, model, {"method": "linear"}))
    with pytest.raises(LimitError, match="chunks"):
        api.plan_render(model, 1.0, (1e6, 1e6, 1e6))
    plan = api.plan_render(model, 2.0, (2.0, 1.0, 1.0))
    cost = limits.render_cost(small_stack.shape, 2.0, (2.0, 1.0, 1.0))
    assert plan.shape == cost.shape
    assert [len(c) for c in plan.chunks] == [
        -(-n // c) for n, c in zip(cost.shape, cost.chunk, strict=True)
    ]


def test_train_gate(tmp_path, small_stack, monkeypatch):
    # float16 flows, on the frame grid (small frames) or y-x subsampled by 2 (y, x >= 64)
    assert limits.flows_bytes((6, 5, 24, 20), "fast") == 2 * 5 * 3 * 5 * 24 * 20
    assert limits.flows_bytes((6, 1, 24, 20), "fast") == 2 * 5 * 2 * 24 * 20
    assert limits.flows_bytes((3, 1, 64, 96), "fast") == 2 * 2 * 2 * 32 * 48
    assert limits.flows_bytes((6, 5, 24, 20), "classical") == 0
    assert limits.flows_bytes((6, 5, 24, 20), "paper") == 0
    monkeypatch.setattr(resources, "free_disk", lambda path: 1000)
    with pytest.raises(LimitError, match=r"model of a 6 × 5 × 24 × 20 input .*optical flows"):
        list(api.train(small_stack, tmp_path / "m", {"preset": "fast"}))
    assert not (tmp_path / "m").exists()
    list(api.train(small_stack, tmp_path / "m", {"method": "linear"}, force=True))
    assert (tmp_path / "m" / "meta.json").is_file()


def test_costs_follow_the_engine_not_the_preset_name(tmp_path, small_stack, monkeypatch):
    """'paper' with the motion engine switched on (Advanced → Motion) computes and stores optical
    flows: its disk check and its job's memory count them, as for 'fast'."""
    shape = tuple(small_stack.shape)
    paper_motion = {"preset": "paper", "steps": 1, "params": {"motion": True}}
    cost = limits.TrainCost(shape, "paper")
    # the disk holds the model without flows, not with them
    monkeypatch.setattr(resources, "free_disk", lambda path: cost.disk_bytes + 10)
    with pytest.raises(LimitError, match=r"optical flows"):
        list(api.train(small_stack, tmp_path / "m", paper_motion))
    assert not (tmp_path / "m").exists()
    fast_job = jobs.train_resources(shape, api.train_config({"preset": "fast"}))
    paper_motion_job = jobs.train_resources(shape, api.train_config(paper_motion))
    paper_job = jobs.train_resources(shape, api.train_config({"preset": "paper"}))
    assert paper_motion_job.memory_bytes == fast_job.memory_bytes > paper_job.memory_bytes


def test_unwritable_targets_are_named_as_given(tmp_path):
    with pytest.raises(SpatimeINRError, match=r"Cannot write the model directory /proc/forbidden"):
        limits.check_writable("/proc/forbidden", "model directory")
    with pytest.raises(SpatimeINRError, match=r"nope/x\.tif: the folder .*nope does not exist"):
        limits.check_writable(tmp_path / "nope" / "x.tif")
    (tmp_path / "f").write_text("x")
    with pytest.raises(SpatimeINRError, match="is a file, not a folder"):
        limits.check_writable(tmp_path / "f" / "x.tif")
    limits.check_writable(tmp_path / "ok.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("kind", ["imagej", "ome", "plain", "zlib"])
@pytest.mark.parametrize("frac", [0.9, 0.5, 1 / 3, 0.05])
def test_truncated_tiff_is_incomplete(tmp_path, kind, frac, capfd):
    data = np.random.default_rng(0).random((4, 4, 32, 32)).astype(np.float32)
    full = tmp_path / ("full.ome.tif" if kind == "ome" else "full.tif")
    kw = {
        "imagej": {"imagej": True, "metadata": {"axes": "TZYX"}},
        "ome": {"metadata": {"axes": "TZYX"}},
        "plain": {"photometric": "minisblack"},
        "zlib": {"compression": "zlib", "photometric": "minisblack"},
    }[kind]
    tifffile.imwrite(full, data, **kw)
    raw = full.read_bytes()
    cut = tmp_path / ("cut.ome.tif" if kind == "ome" else "cut.tif")
    cut.write_bytes(raw[: int(len(raw) * frac)])
    with pytest.raises(SpatimeINRError, match="incomplete or damaged"):
        read_stack(cut)
    assert capfd.readouterr().err == ""  # tifffile's own warnings are not printed
    assert read_stack(full, axes="TZYX" if kind == "plain" else None).shape == (4, 4, 32, 32)


def test_imagej_page_count_must_match_metadata(tmp_path):
    path = tmp_path / "short.tif"
    data = np.zeros((2, 3, 8, 8), np.uint16)
    data[0, 0, 0, 0] = 1
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    raw = path.read_bytes()
    # the same file claiming twice as many planes as it holds
    path.write_bytes(raw.replace(b"images=6", b"images=9").replace(b"frames=2", b"frames=3"))
    with pytest.raises(SpatimeINRError, match="incomplete or damaged"):
        read_stack(path)


def test_channels_message_says_how_to_read_a_stack(tmp_path):
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((1, 1, 4, 4)).astype(np.float32))
    with pytest.raises(SpatimeINRError, match=r"--channel N .*--axes TZYX"):
        read_stack(path)
    assert read_stack(path, axes="TZYX").shape == (1, 1, 4, 4)


def test_reading_refuses_what_memory_cannot_hold(tmp_path, monkeypatch):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((2, 2, 8, 8), np.float32))
    monkeypatch.setattr(resources, "available_memory", lambda: 512 * 2**20 + 100)
    monkeypatch.setattr(resources, "memory_margin", lambda: 512 * 2**20)
    with pytest.raises(LimitError, match=r"reading a\.npy \(shape 2 × 2 × 8 × 8\)"):
        read_stack(path)


def test_napari_reader_refuses_an_incomplete_tiff(tmp_path):
    from napari_spatimeinr._reader import get_reader

    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.ones((4, 4, 32, 32), np.float32), imagej=True)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    reader = get_reader(str(cut))
    assert reader is not None
    with pytest.raises(SpatimeINRError, match="incomplete"):
        reader(str(cut))
