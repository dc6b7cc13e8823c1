"""The motion engine of the fast preset: flow and warping, the refiner, its self-supervision, its
renderer (measured instants exact, untrained = motion-compensated interpolation, cycle consistency,
tiled CNN = whole CNN), and the mean-preserving spline it resamples space with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run_generator
from napari_spatimeinr import api
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.engines.fast.motion import motion_pair, tvl1_flow, warp, warp_pair
from napari_spatimeinr.engines.fast.refiner import Refiner
from napari_spatimeinr.engines.fast.render import MotionRenderer, resample_space
from napari_spatimeinr.engines.fast.task import (
    MAX_STRIDE,
    MotionTask,
    compute_flows,
    load_flows,
    training_pairs,
)
from napari_spatimeinr.engines.histopolation import cell_mean_matrix, resample_axis
from napari_spatimeinr.render.lazy import clear_renderer_cache, get_renderer
from napari_spatimeinr.store.model_dir import ModelDir
from napari_spatimeinr.workflows.evaluate.baselines import motion_interpolate
from napari_spatimeinr.workflows.evaluate.metrics import flicker_ratio

SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)


def _blob(center, shape=(32, 32), s=3.0):
    yy, xx = np.indices(shape, dtype=np.float32)
    return np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * s * s)).astype(np.float32)


def _moving(n_t=4, z=1, step=2.0, seed=0) -> np.ndarray:
    """A blob moving along x by ``step`` pixels per frame, with a little noise."""
    rng = np.random.default_rng(seed)
    frames = [np.stack([_blob((16, 8 + step * t))] * z) for t in range(n_t)]
    return (np.stack(frames) + 0.01 * rng.standard_normal((n_t, z, 32, 32))).astype(np.float32)


def test_warp_identity_and_shift():
    a = _blob((16, 12))
    assert np.allclose(warp(a, np.zeros((2, 32, 32), np.float32)), a)
    shifted = warp(a, np.stack([np.zeros((32, 32)), np.full((32, 32), 3.0)]).astype(np.float32))
    assert np.allclose(shifted[:, 5:-5], _blob((16, 9))[:, 5:-5], atol=1e-2)  # a(x + 3)


def test_tvl1_flow_recovers_a_shift_and_motion_pair_lands_between():
    a, b = _blob((16, 12)), _blob((16, 16))
    v = tvl1_flow(a, b)  # a(x) ≈ b(x + v): v_x ≈ +4 on the blob
    on_blob = a > 0.5
    assert np.median(v[1][on_blob]) == pytest.approx(4.0, abs=0.5)
    assert np.abs(v[0][on_blob]).max() < 0.5
    mid = motion_pair(a, b, v, 0.5)
    peak = np.unravel_index(np.argmax(mid), mid.shape)
    assert peak == (16, 14)
    aw, bw = warp_pair(a, b, v, 0.0)
    assert np.allclose(aw, a)


def test_refiner_starts_as_identity():
    x = torch.rand(2, 1, 3, 8, 8)
    assert torch.equal(Refiner(4, 3)(x), x[:, 0])
    assert Refiner(4, 2, z_kernel=1)(torch.rand(1, 1, 1, 8, 8)).shape == (1, 1, 8, 8)


def test_training_pairs_warp_each_neighbour_onto_the_other():
    data = _moving()
    flows = np.stack([tvl1_flow(data[i, 0], data[i + 1, 0]) for i in range(3)])
    warped, target = training_pairs(data, flows)
    assert warped.shape == (6, 1, 32, 32) and list(target) == [1, 0, 2, 1, 3, 2]
    for i in range(3):  # each warped frame is much closer to its target than its source was
        for w, src, tgt in ((warped[2 * i], i, i + 1), (warped[2 * i + 1], i + 1, i)):
            assert np.abs(w - data[tgt]).mean() < 0.5 * np.abs(data[src] - data[tgt]).mean()
    holdout = np.zeros(data.shape, bool)
    holdout[:, :, :4] = True
    task = MotionTask(data, flows, holdout, 16, 512, torch.device("cpu"), 0)
    assert task.n_crops == 2 and not task.empty
    loss = task.loss(Refiner(4, 2, 1), torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and float(loss.detach()) > 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("motion") / "m"
    stack = Stack4D(_moving(n_t=4, z=3) * 100 + 10)
    recs = list(api.train(stack, path, {"steps": 5, "device": "cpu", "params": SMALL}))
    assert recs[-1].done
    return stack, path


def test_keep_measured_returns_measured_frames_bit_for_bit(tmp_path):
    raw = (_moving(n_t=4, z=3) * 1000 + 100).round().astype(np.uint16)
    stack = Stack4D(raw.astype(np.float32), extra={"source_dtype": "uint16"})
    path = tmp_path / "m"
    run_generator(api.train(stack, path, {"steps": 20, "device": "cpu", "params": SMALL}))
    kept = np.asarray(api.render(path, scale_t=2, keep_measured=True))
    assert kept.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(kept[::2], raw.astype(np.float32))
    plan = api.plan_render(path, scale_t=2, keep_measured=True)
    assert plan.meta.provenance["measured_frames"] == "as acquired"
    # by default a measured instant is the refiner's estimate, not the noisy frame
    _, r = get_renderer(path, "cpu")
    with torch.no_grad():
        for p in r.net.parameters():
            p.add_(0.01)
    r._cache.clear()
    default = np.asarray(api.render(path, scale_t=2, device="cpu"))
    kept = np.asarray(api.render(path, scale_t=2, device="cpu", keep_measured=True))
    np.testing.assert_array_equal(kept[::2], raw.astype(np.float32))
    assert np.abs(default[::2] - kept[::2]).mean() > 1.0
    np.testing.assert_array_equal(default[1::2], kept[1::2])
    clear_renderer_cache(path)
    prov = api.plan_render(path, scale_t=2).meta.provenance
    assert prov["measured_frames"].startswith("model estimate")
    # a render without new instants has one noise level already: measured frames as acquired
    space_only = api.plan_render(path, scale_t=1, scale_zyx=(2, 1, 1))
    assert space_only.keep_measured
    assert space_only.meta.provenance["measured_frames"].startswith("as acquired")


def test_untrained_renderer_is_motion_compensated_interpolation(trained):
    stack, path = trained
    md = ModelDir(path)
    r = MotionRenderer(md, "cpu")
    for p in r.net.parameters():  # zero residual: the untrained refiner
        torch.nn.init.zeros_(p)
    grid = [np.arange(n, dtype=float) for n in stack.shape[1:]]
    # measured frames as acquired (as the baseline returns them); new instants are the same
    # either way
    ours = np.stack([r.render_block([t / 4], *grid, keep_measured=True)[0] for t in range(13)])
    new = [t for t in range(13) if t % 4]
    default = np.stack([r.render_block([t / 4], *grid)[0] for t in new])
    np.testing.assert_array_equal(default, ours[new])
    ref = run_generator(motion_interpolate(np.asarray(md.input), 4))
    # frames this small are solved on one level at full resolution, where the torch TV-L1 and
    # scikit-image's TV-L1 (the motion baseline) are the same algorithm; the stored flows are
    # rounded to 1/32 voxel (task.FLOW_QUANTUM_VOXELS), which moves a voxel by at most
    # |gradient| / 64
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert np.abs(ours - ref).mean() < 1e-4


def test_tiled_refiner_equals_whole(trained):
    _, path = trained
    md = ModelDir(path)
    whole = MotionRenderer(md, "cpu").frame(0.5)
    tiled = MotionRenderer(md, "cpu")
    tiled.tile = 5  # as after a CUDA out-of-memory
    np.testing.assert_allclose(tiled.frame(0.5), whole, atol=1e-5)


def test_spatial_render_is_cycle_consistent(trained):
    stack, path = trained
    md = ModelDir(path)
    out = np.asarray(api.render(path, scale_t=1, scale_zyx=(2, 1, 1), keep_measured=True))
    assert out.shape == (4, 6, 32, 32)
    pooled = out.reshape(4, 3, 2, 32, 32).mean(axis=2)  # mean-pooling back to the input grid
    np.testing.assert_allclose(md.norm.apply(pooled), md.input, atol=1e-4)
    # the model's own frames (the default with new instants) pool back to the frames it renders
    # on the input's z grid
    out = np.asarray(api.render(path, scale_t=2, scale_zyx=(2, 1, 1)))
    same = np.asarray(api.render(path, scale_t=2))
    np.testing.assert_allclose(out.reshape(7, 3, 2, 32, 32).mean(axis=2), same, atol=1e-3)


def test_single_frame_has_nothing_to_learn_and_renders_the_spline(tmp_path):
    vol = Stack4D((_moving(n_t=1, z=4) * 50 + 5).astype(np.float32))
    recs = list(api.train(vol, tmp_path / "m", {"steps": 5, "device": "cpu", "params": SMALL}))
    assert recs[-1].done and "nothing to learn" in recs[-1].message
    out = np.asarray(api.render(tmp_path / "m", scale_zyx=(2, 1, 1)))
    md = ModelDir(tmp_path / "m")
    ref = md.norm.invert(
        resample_axis(np.asarray(md.input), 1, (np.arange(8) + 0.5) / 2 - 0.5, 0.5)
    )
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


def test_cell_mean_matrix_identity_mean_and_constants():
    n = 6
    m = cell_mean_matrix(n, np.arange(n, dtype=float), 1.0)
    np.testing.assert_allclose(m, np.eye(n), atol=1e-9)
    # x2 sub-voxels average back to each voxel
    sub = cell_mean_matrix(n, (np.arange(2 * n) + 0.5) / 2 - 0.5, 0.5)
    np.testing.assert_allclose(sub.reshape(n, 2, n).mean(axis=1), np.eye(n), atol=1e-9)
    # a constant stays constant, inside and outside the sampled range
    np.testing.assert_allclose(cell_mean_matrix(n, np.linspace(-2, 7, 19), 0.3).sum(1), 1.0)


def test_resample_space_scale_one_is_a_copy_of_the_frame():
    f = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    grid = [np.arange(n, dtype=float) for n in f.shape]
    assert np.array_equal(resample_space(f, *grid, (1.0, 1.0, 1.0)), f)


def test_renderer_without_weights_says_what_to_do(trained, tmp_path):
    import shutil

    from napari_spatimeinr.core.errors import SpatimeINRError

    _, path = trained
    copy = tmp_path / "m"
    shutil.copytree(path, copy)
    (copy / "model.pt").unlink()
    with pytest.raises(SpatimeINRError, match="no trained weights.*train it first"):
        MotionRenderer(ModelDir(copy), "cpu")


def test_default_render_has_one_noise_level_keep_measured_does_not(tmp_path):
    """The flicker ratio (high-frequency energy of measured over new frames) of a x4 render of a
    noisy time-lapse is about 1 by default; with the raw measured frames it is far above."""
    rng = np.random.default_rng(1)
    clean = np.stack([np.stack([_blob((16, 6 + 1.5 * t))] * 2) for t in range(6)])
    noisy = (clean + 0.08 * rng.standard_normal(clean.shape)).astype(np.float32) * 100 + 20
    path = tmp_path / "m"
    run_generator(api.train(Stack4D(noisy), path, {"steps": 30, "device": "cpu", "params": SMALL}))
    measured = list(range(0, 21, 4))
    default = np.asarray(api.render(path, scale_t=4, device="cpu"))
    raw = np.asarray(api.render(path, scale_t=4, device="cpu", keep_measured=True))
    assert 0.8 <= flicker_ratio(default, measured) <= 1.25
    assert flicker_ratio(raw, measured) > 1.4


def test_flow_budget_chooses_a_coarser_grid():
    data = np.stack([np.stack([_blob((16, 8 + 2 * t), (64, 64))]) for t in range(4)]) * 10
    flows = run_generator(compute_flows(data, lambda: False, budget=1e-6))
    assert int(flows["stride"]) == MAX_STRIDE  # nothing fits: the coarsest grid
    assert flows["gap1"].shape == (3, 2, 4, 4)
    fine = run_generator(compute_flows(data, lambda: False))
    assert int(fine["stride"]) == 2 and fine["gap1"].shape == (3, 2, 32, 32)


def test_flows_left_out_by_the_budget_are_solved_when_rendering(tmp_path):
    data = _moving(n_t=5) * 100 + 10
    path = tmp_path / "m"
    run_generator(api.train(Stack4D(data), path, {"steps": 3, "device": "cpu", "params": SMALL}))
    md = ModelDir(path)
    flows = load_flows(md)
    flows = {k: np.array(v) for k, v in flows.items()}  # read whole: rewritten below
    assert flows["computed"].all()
    whole = MotionRenderer(md, "cpu").frame(2.5)
    flows["computed"][2:] = False  # as after a spent flow budget
    flows["gap1"][2:] = 0
    np.savez(path / "flows.npz", **flows)
    task = MotionTask(
        np.asarray(md.input),
        flows["gap1"],
        np.zeros(data.shape, bool),
        16,
        512,
        torch.device("cpu"),
        0,
        flows["computed"],
    )
    assert task.n == 4  # two pairs, both directions
    r = MotionRenderer(md, "cpu")
    np.testing.assert_allclose(r.frame(2.5), whole, atol=1e-3)


def test_2d_refiner_runs_its_planes_as_2d_convolutions_with_the_same_result():
    net = Refiner(4, 3, z_kernel=1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 1, 3, 10, 12)
    with torch.no_grad():
        as_3d = x[:, 0] + net.body(x)[:, 0]
        np.testing.assert_allclose(net(x).numpy(), as_3d.numpy(), atol=1e-5)
