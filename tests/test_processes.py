"""The render process helper: what it sends to the child process, and what comes back."""

import pickle
from concurrent.futures import Future

import dask.array as da
import numpy as np
import pytest

from napari_spatimeinr import api
from napari_spatimeinr._layers import browse_plan
from napari_spatimeinr._widgets import processes
from napari_spatimeinr.core.config import TrainConfig
from napari_spatimeinr.store.model_dir import create_model_dir


class _HerePool:
    """Stands in for the process pool: runs the task here, records the bytes it was sent."""

    def __init__(self):
        self.sent: list[int] = []

    def submit(self, fn, payload):
        self.sent.append(len(payload))
        fut = Future()
        fut.set_result(fn(payload))
        return fut


def test_compute_sends_only_the_tasks_of_the_asked_block(monkeypatch, tmp_path, small_stack):
    pool = _HerePool()
    monkeypatch.setattr(processes, "process_pool", lambda: pool)
    md = create_model_dir(tmp_path / "m", small_stack, TrainConfig(method="linear"))
    layer = api.render_plan(browse_plan(api.plan_render(md, 4.0, (1.0, 1.0, 1.0))))
    block = layer.blocks[5, 1, 0, 0]  # what a lazy layer asks for: one plane
    [out] = processes.compute([block])
    np.testing.assert_allclose(out, layer[5:6, 1:2].compute(scheduler="sync"))
    # a block carries the whole layer's graph: pickling it held the GIL (the GUI) for 70-90 ms
    # per slice of a tz_yeast layer
    assert pool.sent[0] * 10 < len(pickle.dumps([block]))


def test_compute_falls_back_when_the_graph_cannot_be_sent(monkeypatch):
    pool = _HerePool()
    monkeypatch.setattr(processes, "process_pool", lambda: pool)
    darr = da.ones((4, 4), chunks=2).map_blocks(lambda b: b + 1)  # a local function
    [out] = processes.compute([darr.blocks[0, 0]])
    np.testing.assert_array_equal(out, np.full((2, 2), 2.0))
    assert pool.sent == []  # computed here


_OWNER = r"""
import os, sys, time
import dask, dask.array as da, numpy as np
from napari_spatimeinr._widgets import processes
import slow_job

[_] = processes.compute([da.ones(2).sum()])  # the render process is up
print("POOL", *processes.process_pool()._processes, flush=True)
for item in processes.iterate_in_process(slow_job.export, sys.argv[1], stop=lambda: False):
    print(*item, flush=True)
"""

_SLOW_JOB = r"""
import os, time
import dask.array as da, numpy as np

def _slow(block):
    time.sleep(0.3)
    return block

def export(path, stop):
    from napari_spatimeinr._widgets.processes import export_steps
    from napari_spatimeinr.io.meta import OutputMeta

    yield ("CHILD", os.getpid())
    plan_meta = OutputMeta(name="slow")
    darr = da.ones((200, 1, 8, 8), np.float32, chunks=(1, 1, 8, 8)).map_blocks(_slow)
    yield from export_steps(darr, path, plan_meta, dtype="float32", overwrite=False, stop=stop)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (Linux /proc)."""
    import os

    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        todo.extend(kids - found)
        found |= kids
    return found


def test_children_end_when_their_owner_is_killed(tmp_path):
    """Issue 21: SIGKILL the process that owns the render process and an export child; within
    20 s no child is left, and the export left no partial file."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to list processes")
    (tmp_path / "slow_job.py").write_text(_SLOW_JOB)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ)
    src = str(Path(processes.__file__).parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, str(tmp_path), env.get("PYTHONPATH", "")])
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(out_dir / "movie.tif")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    children: set[int] = set()
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:  # until the export has written a chunk
            line = owner.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if line.startswith("progress"):
                break
        assert any(x.startswith("POOL") for x in lines) and any(
            x.startswith("CHILD") for x in lines
        ), "".join(lines)
        children = _descendants(owner.pid)
        pool = {int(p) for x in lines if x.startswith("POOL") for p in x.split()[1:]}
        [child] = [int(x.split()[1]) for x in lines if x.startswith("CHILD")]
        assert pool | {child} <= children
        end = time.monotonic() + 10
        while time.monotonic() < end and not list(out_dir.iterdir()):
            time.sleep(0.05)
        assert [p.suffix for p in out_dir.iterdir()] == [".tmp"], "".join(lines)  # mid-write
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        end = time.monotonic() + 20
        while time.monotonic() < end and any(_alive(p) for p in children):
            time.sleep(0.2)
        assert not [p for p in children if _alive(p)]
        assert list(out_dir.iterdir()) == []  # no partial file
    finally:
        owner.kill()
        for p in children | _descendants(owner.pid):  # what a failure left (never ours)
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


_THREAD_STARTS_POOL = r"""
import os, threading, time
import dask.array as da
from napari_spatimeinr._widgets import processes

if __name__ == "__main__":
    t = threading.Thread(target=lambda: processes.compute([da.ones(3).sum()]))
    t.start()
    t.join()  # the thread that started the render process has ended
    time.sleep(1.5)
    [pid] = processes.process_pool()._processes
    [four] = processes.compute([da.ones(4).sum()])
    print("OK", pid, float(four), flush=True)
"""


def test_render_process_outlives_the_thread_that_started_it(tmp_path):
    """PR_SET_PDEATHSIG fires when the *thread* that started a child ends (a worker thread often
    starts the render process): the child must tell that from its parent's death."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "thread_pool.py"
    script.write_text(_THREAD_STARTS_POOL)
    env = dict(os.environ)
    src = str(Path(processes.__file__).parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    assert out.stdout.split()[-1] == "4.0"
