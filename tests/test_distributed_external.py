"""`spatimeinr render --scheduler` through a real `dask scheduler` and two `dask worker` processes.

The scheduler and workers run in another working directory than the client, as on a cluster:
relative paths given to the CLI must reach the workers as absolute ones.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_spatimeinr import api
from napari_spatimeinr.cli import main
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.render.lazy import plan_render, render

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):  # workers first, then the scheduler
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def scheduler(tmp_path):
    """A scheduler and two single-threaded workers on 127.0.0.1, started from another folder."""
    from distributed import Client

    elsewhere = tmp_path / "cluster"
    elsewhere.mkdir()
    address = f"tcp://127.0.0.1:{_free_port()}"
    dask = [sys.executable, "-m", "dask"]
    log = open(elsewhere / "cluster.log", "wb")  # noqa: SIM115 - closed in finally
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [*dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1]]
                + ["--no-dashboard"],
                cwd=elsewhere,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1"]
                    + ["--no-dashboard", "--no-nanny", "--name", f"w{i}"],
                    cwd=elsewhere,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60
        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
        yield address
    finally:
        _stop(procs)
        log.close()


def test_render_through_external_scheduler_matches_local(scheduler, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    data = (rng.random((4, 3, 16, 12)) * 1000 + 50).astype(np.float32)
    stack = Stack4D(data, voxel_size=(1.0, 0.3, 0.3), frame_interval=10.0, name="ext")
    monkeypatch.chdir(tmp_path)
    assert list(api.train(stack, "m.spatimeinr", {"method": "cubic"}))[-1].done
    local = render("m.spatimeinr", 2, (2, 1.5, 2), chunks=(2, 2, 8, 12)).compute(
        scheduler="threads"
    )
    plan = plan_render("m.spatimeinr", 2, (2, 1.5, 2))
    common = ["--scale-t", "2", "--scale-z", "2", "--scale-y", "1.5", "--scale-x", "2"]
    common += ["--chunk-mb", "0.01", "--scheduler", scheduler, "--quiet"]
    assert main(["render", "m.spatimeinr", "-o", "out.zarr", *common]) == 0
    assert main(["render", "m.spatimeinr", "-o", "out.tif", *common]) == 0

    import tifffile
    import zarr

    atol = 1e-6 * float(np.ptp(local))
    zarr_out = zarr.open_group("out.zarr", mode="r")["0"][:]
    np.testing.assert_allclose(zarr_out, local, rtol=0, atol=atol)
    np.testing.assert_allclose(tifffile.imread("out.tif"), local, rtol=0, atol=atol)
    assert zarr_out.shape == plan.shape
    # nothing was written where the workers run
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == ["cluster.log"]
