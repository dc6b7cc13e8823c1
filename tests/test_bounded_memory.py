"""Issue 23, bounded memory: the compact model directory (the input in its own dtype, normalized on
read), training crops warped when drawn, and memory that does not grow with the number of frames."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_spatimeinr import api, limits
from napari_spatimeinr.core.config import TrainConfig
from napari_spatimeinr.data.normalize import Normalization
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.engines.fast import flow
from napari_spatimeinr.engines.fast.render import MotionRenderer
from napari_spatimeinr.engines.fast.task import MotionTask, flow_crop, training_pairs
from napari_spatimeinr.engines.loop import PackedMask, holdout_mask
from napari_spatimeinr.store.model_dir import ModelDir, StoredInput, create_model_dir

V1 = Path(__file__).parent / "data" / "models_v1"
SMALL = dict(refine_width=4, refine_depth=2, batch_size=512, patch_size=16, spatial=False)


def _uint16_stack(shape=(5, 4, 24, 20), seed=0) -> Stack4D:
    raw = np.random.default_rng(seed).integers(90, 4000, shape).astype(np.uint16)
    return Stack4D(raw.astype(np.float32), extra={"source_dtype": "uint16"}, name="u16")


def test_the_model_directory_stores_the_input_in_its_dtype_and_reads_it_normalized(tmp_path):
    stack = _uint16_stack()
    md = create_model_dir(tmp_path / "m", stack, TrainConfig(method="linear"))
    stored = np.load(md.path / "input.npy", mmap_mode="r")
    assert stored.dtype == np.uint16  # 2 bytes a voxel: the file's own size, not float32's
    np.testing.assert_array_equal(stored, stack.data.astype(np.uint16))
    assert md.meta["input_encoding"] == "raw" and md.meta["input_dtype"] == "uint16"
    norm = Normalization.fit(stack.data)
    expected = norm.apply(stack.data)  # what format 1 stored as float32
    again = ModelDir(md.path)
    assert again.input.dtype == np.float32 and again.input.shape == stack.shape
    np.testing.assert_array_equal(np.asarray(again.input), expected)
    np.testing.assert_array_equal(again.input[2, 1:3, 5:9], expected[2, 1:3, 5:9])
    np.testing.assert_array_equal(again.input[[0, 4], [1, 3]], expected[[0, 4], [1, 3]])
    np.testing.assert_array_equal(again.stack().data, stack.data)  # raw values exactly
    assert again.input.fit_normalization() == Normalization.fit(expected)
    size = (md.path / "input.npy").stat().st_size
    assert size < 2 * stack.data.size + 1024


def test_non_integral_or_out_of_range_values_are_stored_as_float32(tmp_path):
    stack = _uint16_stack()
    stack.data[0, 0, 0, 0] += 0.5  # not a uint16 value any more
    md = create_model_dir(tmp_path / "m", stack, TrainConfig(method="linear"))
    assert md.meta["input_dtype"] == "float32"
    np.testing.assert_array_equal(md.stack().data, stack.data)
    plain = Stack4D(stack.data - 5000.0)  # a float source
    md2 = create_model_dir(tmp_path / "m2", plain, TrainConfig(method="linear"))
    assert md2.meta["input_dtype"] == "float32"
    np.testing.assert_array_equal(
        np.asarray(md2.input), Normalization.fit(plain.data).apply(plain.data)
    )


def test_a_format_1_directory_reads_its_normalized_float32_input_as_stored(tmp_path):
    model = tmp_path / "fast"
    shutil.copytree(V1 / "fast", model)
    md = ModelDir(model)
    assert "input_encoding" not in json.loads((model / "meta.json").read_text())
    stored = np.load(model / "input.npy")
    assert stored.dtype == np.float32 and md.input.norm is None
    np.testing.assert_array_equal(np.asarray(md.input), stored)
    np.testing.assert_allclose(md.stack().data, md.norm.invert(stored))


def test_holdout_mask_drawn_frame_by_frame_and_packed_is_the_same_mask():
    shape = (3, 4, 10, 21)
    whole = np.random.default_rng(5 + 7919).random(shape) < 0.02  # the former draw, at once
    np.testing.assert_array_equal(holdout_mask(shape, 5), whole)
    packed = PackedMask.holdout(shape, 5)
    assert packed.bits.nbytes == 3 * 4 * 10 * 3  # a bit per voxel (rows padded to bytes)
    np.testing.assert_array_equal(packed[1, 1:3, 2:9, 3:20], whole[1, 1:3, 2:9, 3:20])
    np.testing.assert_array_equal(packed[2, :, :, 0:21], whole[2])


@pytest.mark.parametrize(("shape", "stride"), [((4, 6, 40, 52), 2), ((3, 1, 40, 52), 4)])
def test_crops_warped_when_drawn_equal_crops_of_the_whole_warped_frames(shape, stride):
    rng = np.random.default_rng(0)
    data = rng.random(shape).astype(np.float32)
    sp = flow.spatial_shape(shape)
    gap1 = rng.normal(0, 3, (shape[0] - 1, len(sp), *flow.flow_grid_shape(sp, stride)))
    gap1 = gap1.astype(np.float16)
    warped, targets = training_pairs(data, gap1)  # the former way: every pair warped whole
    holdout = np.random.default_rng(1).random(shape) < 0.1
    task = MotionTask(data, gap1, holdout, 16, 512, torch.device("cpu"), 0)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        box = task._draw(gen, task.crop)
        j, z0, y0, x0, dz, dy, dx = box
        sl = (slice(z0, z0 + dz), slice(y0, y0 + dy), slice(x0, x0 + dx))
        x, y, m = task._example(box)
        np.testing.assert_allclose(x[0].numpy(), warped[j][sl], atol=1e-4)
        np.testing.assert_array_equal(y.numpy(), data[targets[j]][sl])
        np.testing.assert_array_equal(m.numpy(), ~holdout[targets[j]][sl])
    box = tuple(slice(1, min(n, 9)) for n in sp)
    whole = flow.full_flow(gap1[1], sp)[(slice(None), *box)]
    np.testing.assert_allclose(flow_crop(gap1[1], sp, box).numpy(), whole.numpy(), atol=1e-5)


def _moving_stack(n_t: int, shape=(4, 48, 48)) -> Stack4D:
    z, ny, nx = shape
    yy, xx = np.indices((ny, nx), dtype=np.float32)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n_t):
        blob = np.exp(-((yy - 24) ** 2 + (xx - 10 - t) ** 2) / 18.0)
        frames.append(np.stack([blob] * z) * 1000 + 100 + rng.normal(0, 5, (z, ny, nx)))
    data = np.round(np.stack(frames)).astype(np.float32)
    return Stack4D(data, extra={"source_dtype": "uint16"}, name=f"moving{n_t}")


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_training_and_rendering_memory_does_not_grow_with_the_frames(tmp_path):
    """numpy memory traced while the refiner's task is built and steps, and while a renderer
    renders every instant, for 4 and 24 frames of one size: about the same (the former code held
    float32 copies of the whole stack: the warped pairs and their targets, the held-out mask as
    float64, the renderer's input twice); and within the limits' estimates."""
    from napari_spatimeinr.engines.fast.refiner import Refiner
    from napari_spatimeinr.engines.fast.task import load_flows

    peaks = {}
    for n_t in (4, 24):
        stack = _moving_stack(n_t)
        cfg = api.train_config({"device": "cpu", "params": SMALL})
        md = create_model_dir(tmp_path / f"m{n_t}", stack, cfg)
        net = Refiner(4, 2)  # an untrained model: its flows stored as training stores them
        torch.save(net.state_dict(), md.path / "model.pt")
        rng = np.random.default_rng(0)
        gap1 = rng.normal(0, 1, (n_t - 1, 3, 4, 24, 24)).astype(np.float16)  # y, x stride 2
        np.savez_compressed(md.path / "flows.npz", gap1=gap1, stride=np.asarray(2))
        flows = load_flows(md)

        def train(md=md, flows=flows, net=net):
            mask = PackedMask.holdout(md.shape, 0)
            task = MotionTask(md.input, flows["gap1"], mask, 16, 512, torch.device("cpu"), 0)
            gen = torch.Generator().manual_seed(0)
            for _ in range(3):
                task.loss(net, gen).backward()
            task.validate(net)

        def render(md=md, n_t=n_t):
            r = MotionRenderer(md, "cpu")
            for t in np.arange(0, n_t - 1, 0.5):
                r.frame(float(t))

        peaks[n_t] = (_traced_peak(train), _traced_peak(render), flows["gap1"].nbytes)
        cost = limits.TrainCost(stack.shape, "fast", "uint16")
        assert peaks[n_t][0] < cost.work_bytes
        assert peaks[n_t][1] < limits.renderer_bytes(stack.shape) - limits.PROCESS_BYTES
    (train4, render4, flows4), (train24, render24, flows24) = peaks[4], peaks[24]
    frame = 4 * 4 * 48 * 48
    # 20 more frames: only their flows more (float16 on the flow grid, kept whole by renderers,
    # and their zipped copy while read); the former code's copies alone were more than
    # 20 x 4 frames more
    assert train24 < train4 + 8 * frame, peaks
    assert render24 < render4 + 3 * (flows24 - flows4) + 8 * frame, peaks


def test_the_stored_input_lets_pages_go_after_a_window_of_reads(tmp_path, monkeypatch):
    from napari_spatimeinr.store import model_dir as mdmod

    arr = np.arange(4 * 3 * 8 * 8, dtype=np.uint16).reshape(4, 3, 8, 8)
    np.save(tmp_path / "x.npy", arr)
    monkeypatch.setattr(mdmod, "REMAP_BYTES", 3 * 8 * 8 * 2)  # one frame
    s = StoredInput(tmp_path / "x.npy", Normalization(0.0, 10.0, 0.0, 10.0))
    first = s._map()
    s[0]
    assert s._map() is first  # one frame read: the same map
    s[1]
    assert s._map() is not first  # past the window: a fresh map (the old pages are let go)
    np.testing.assert_allclose(s[3], arr[3] / 10.0)
    assert s.nbytes == 4 * arr.size and s.stored_nbytes == arr.nbytes


def test_flows_are_stored_compressed_pair_by_pair_and_read_a_pair_at_a_time(tmp_path):
    from napari_spatimeinr.engines.fast.task import (
        PAIR_KEY,
        FlowPairs,
        flow_quantum,
        flows_bytes,
        load_flows,
    )

    md = create_model_dir(tmp_path / "m", _uint16_stack(), TrainConfig(method="linear"))
    yy = np.linspace(0, 1, 12, dtype=np.float32)
    gap1 = (np.ones((4, 3, 4, 12, 10)) * yy[:, None]).astype(np.float16)  # smooth, as flows are
    flows = {"gap1": gap1, "stride": np.asarray(2), "computed": np.array([1, 1, 0, 1], bool)}
    (md.path / "flows.npz").write_bytes(flows_bytes(flows))
    assert (md.path / "flows.npz").stat().st_size < gap1.nbytes / 2  # zip-compressed
    got = load_flows(md)
    pairs = got["gap1"]
    assert isinstance(pairs, FlowPairs) and pairs.shape == gap1.shape
    # rounded to 1/32 of a full-grid voxel: y and x are stored in units of the stride-2 grid
    step = flow_quantum(3, 2)
    np.testing.assert_allclose(step, [1 / 32, 1 / 64, 1 / 64])
    tol = step.reshape(3, 1, 1, 1) / 2 + 1e-3
    assert pairs[2].dtype == np.float16 and np.all(np.abs(pairs[2] - gap1[2]) <= tol)
    assert len(pairs._kept) == 1  # only the pair asked for was read
    assert np.all(np.abs(np.asarray(pairs, np.float32) - gap1) <= tol)
    assert int(got["stride"]) == 2 and list(got["computed"]) == [True, True, False, True]
    pairs[2] = np.zeros(gap1.shape[1:])  # a pair solved later is kept in memory
    assert not pairs[2].any() and pairs[1].any()
    # directories written before: float16 pairs (no quantum), and one array, all computed
    entries = {PAIR_KEY.format(i): gap1[i] for i in range(4)}
    np.savez(md.path / "flows.npz", pairs=np.asarray(gap1.shape), stride=2, **entries)
    np.testing.assert_array_equal(np.asarray(load_flows(md)["gap1"]), gap1)
    np.savez(md.path / "flows.npz", gap1=gap1)
    old = load_flows(md)
    np.testing.assert_array_equal(old["gap1"], gap1)
    assert old["computed"].all()


def test_stored_flows_take_a_fraction_of_float16(tmp_path):
    """Real flows have noisy low bits: rounded to 1/32 voxel they zip to far less than float16."""
    import io
    import zlib

    from napari_spatimeinr.engines.fast.task import flows_bytes

    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.normal(size=(6, 3, 8, 64, 64)), (0, 0, 1, 6, 6))
    gap1 = (10 * smooth + 0.01 * rng.normal(size=smooth.shape)).astype(np.float16)
    stored = len(flows_bytes({"gap1": gap1, "stride": 2, "computed": np.ones(6, bool)}))
    buf = io.BytesIO()
    np.save(buf, gap1)
    assert stored < len(zlib.compress(buf.getvalue())) / 2.5  # float16: 1.1x smaller zipped


def test_training_reads_an_uncompressed_file_memory_mapped_into_the_same_model(tmp_path):
    from napari_spatimeinr.io.read import read_stack

    raw = _uint16_stack().data.astype(np.uint16)
    np.save(tmp_path / "s.npy", raw)
    mapped = read_stack(tmp_path / "s.npy", mapped=True)
    assert isinstance(mapped.data, np.memmap) and mapped.data.dtype == np.uint16
    loaded = read_stack(tmp_path / "s.npy")
    assert loaded.data.dtype == np.float32
    a = create_model_dir(tmp_path / "a", mapped, TrainConfig(method="linear"))
    b = create_model_dir(tmp_path / "b", loaded, TrainConfig(method="linear"))
    assert a.meta["normalization"] == b.meta["normalization"]
    assert a.meta["input_dtype"] == b.meta["input_dtype"] == "uint16"
    np.testing.assert_array_equal(np.asarray(a.input), np.asarray(b.input))


def test_malloc_is_tuned_once_on_linux():
    import platform
    import sys

    from napari_spatimeinr.core import resources

    got = resources.tune_malloc()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert got == glibc
    assert resources.tune_malloc() == got  # idempotent
