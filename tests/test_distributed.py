"""Rendering on a dask.distributed LocalCluster of worker processes equals the local render."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from unittest import mock

import dask
import numpy as np
import pytest

from napari_spatimeinr import api
from napari_spatimeinr.core import cluster as dist_mod
from napari_spatimeinr.core.cluster import check_workers, connect, dask_client
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.render.lazy import plan_render, render

pytest.importorskip("distributed")


def _stack() -> Stack4D:
    from scipy import ndimage

    rng = np.random.default_rng(3)
    data = (ndimage.gaussian_filter(rng.random((5, 4, 20, 16)), 1.5) * 1000 + 100).astype(
        np.float32
    )
    return Stack4D(data, voxel_size=(1.0, 0.2, 0.2), frame_interval=30.0, name="tiny")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "cubic.spatimeinr"
    records = list(api.train(_stack(), path, {"method": "cubic"}))
    assert records[-1].done
    return path


@pytest.fixture(scope="module")
def client(model):
    """Two worker processes; pretend the machine has 2 GPUs to check that each gets its own."""
    # One lost worker is retried; a task that kills two workers is given up (KilledWorker).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        mock.patch.object(dist_mod, "_gpu_count", return_value=2),
        dask_client(workers=2, model_dir=model) as c,
    ):
        yield c


def test_cluster_matches_local_threads(client, model):
    arr = render(model, 2, (2, 1.5, 2), chunks=(2, 3, 16, 12))
    assert arr.numblocks[1] > 1 and arr.numblocks[2] > 1
    local = arr.compute(scheduler="threads")
    remote = client.compute(arr).result()
    assert remote.dtype == np.float32
    np.testing.assert_allclose(remote, local, rtol=0, atol=1e-6 * float(np.ptp(local)))
    # The workers are processes, each with its own renderer cache, sharing out the machine.
    assert len(set(client.run(os.getpid).values())) == 2
    assert sorted(client.nthreads().values()) == [max(1, (os.cpu_count() or 1) // 2)] * 2


def test_each_local_worker_sees_its_own_gpu(client):
    seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert sorted(seen.values()) == ["0", "1"]


def test_device_is_resolved_on_the_workers(client, model):
    plan = plan_render(model, 2, device="auto")
    assert plan.device == "auto"  # not fixed by the client's hardware
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    except ImportError:
        pass
    # Planning "cuda" on a client without GPU is allowed (workers may have one); the workers say no.
    arr = render(model, 2, device="cuda")
    with pytest.raises(SpatimeINRError, match="no CUDA GPU"):
        client.compute(arr).result()


def test_model_dir_not_visible_to_workers(client, tmp_path):
    with pytest.raises(SpatimeINRError, match="not visible to 2 of 2 dask workers"):
        check_workers(client, tmp_path / "nowhere")


def test_zarr_output_folder_must_exist_on_workers(client, model, tmp_path):
    with pytest.raises(SpatimeINRError, match="not writable on 2 of 2"):
        check_workers(client, model, tmp_path / "missing" / "out.zarr")
    assert check_workers(client, model, tmp_path / "out.zarr") == 2


def test_unreachable_scheduler_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(SpatimeINRError, match="Could not reach a dask scheduler"):
        connect(f"127.0.0.1:{port}", timeout=1)
    assert time.perf_counter() - t0 < 10


def test_task_killing_workers_is_one_clear_error(model):
    arr = render(model, 1, chunks=(1, 4, 20, 16))

    def die_on_first(block, block_info=None):
        if block_info[0]["chunk-location"] == (0, 0, 0, 0):
            os._exit(1)
        return block

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(SpatimeINRError, match="workers kept dying"):
            with dask_client(workers=1, model_dir=model):
                arr.map_blocks(die_on_first, dtype=np.float32).compute()


def _read(path):
    if path.suffix == ".zarr":
        import zarr

        return zarr.open_group(str(path), mode="r")["0"][:]
    import tifffile

    return tifffile.imread(path)


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_export_on_cluster_matches_local(client, model, tmp_path, suffix):
    plan = plan_render(model, 2, (2, 1, 1), chunks=(2, 2, 20, 16))
    arr = api.render_plan(plan)
    local = arr.compute(scheduler="threads")
    seen = []
    out = api.export(
        arr, tmp_path / f"out{suffix}", plan.meta, progress=lambda d, t: seen.append(d)
    )
    np.testing.assert_allclose(_read(out), local, rtol=0, atol=1e-6 * float(np.ptp(local)))
    # progress goes up one step at a time to the end (per slab as it lands)
    assert seen[0] == 0 and seen == sorted(seen) and seen[-1] > 1
    assert seen[-1] - seen[-2] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_failed_export_leaves_nothing_that_looks_complete(client, model, tmp_path, suffix):
    plan = plan_render(model, 2, chunks=(1, 2, 20, 16))
    arr = api.render_plan(plan)
    last = arr.numblocks[0] - 1

    def fail_last_frame(block, block_info=None):
        if block_info[0]["chunk-location"][0] == last:
            raise RuntimeError("boom")
        return block

    with pytest.raises(RuntimeError, match="boom"):
        api.export(
            arr.map_blocks(fail_last_frame, dtype=np.float32), tmp_path / f"o{suffix}", plan.meta
        )
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_worker_killed_mid_export_completes(client, model, tmp_path, suffix):
    client.wait_for_workers(2, timeout=30)
    plan = plan_render(model, 2, (2, 2, 2), chunks=(1, 4, 20, 16))
    arr = api.render_plan(plan)
    local = arr.compute(scheduler="threads")

    def slow(block):
        time.sleep(0.05)
        return block

    pid = next(iter(client.run(os.getpid).values()))
    killer = threading.Timer(0.8, os.kill, (pid, signal.SIGKILL))
    killer.start()
    t0 = time.perf_counter()
    out = api.export(arr.map_blocks(slow, dtype=np.float32), tmp_path / f"o{suffix}", plan.meta)
    killer.join()
    assert time.perf_counter() - t0 > 0.8  # the worker died mid-export
    np.testing.assert_allclose(_read(out), local, rtol=0, atol=1e-6 * float(np.ptp(local)))
    client.wait_for_workers(2, timeout=30)


def test_scheduler_file_missing_or_stale(tmp_path):
    with pytest.raises(SpatimeINRError, match="Scheduler file .* not found"):
        connect(str(tmp_path / "scheduler.json"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stale = tmp_path / "stale.json"
    stale.write_text(f'{{"address": "tcp://127.0.0.1:{port}", "type": "Scheduler"}}')
    with pytest.raises(SpatimeINRError, match="Could not reach a dask scheduler"):
        connect(str(stale), timeout=1)
