"""Bad CLI invocations (issue 13): each ends with exit status 2, one line on stderr without a
traceback, nothing left behind, and a peak resident memory below 1 GB.

The table runs in one fresh interpreter (``fuzz_runner.py``) that imports the CLI once and forks a
child per invocation, so every case gets its own exit status, stderr and peak memory (``wait4``)
without paying the import each time. The two cases of the issue's "Must" also run as plain
``python -m napari_spatimeinr.cli`` processes, timed and measured from outside.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_spatimeinr import api

RSS_LIMIT_MB = 1024
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs, good and bad, in one folder; the model of the good one."""
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    good = (rng.random((6, 4, 16, 16)) * 1000).astype(np.uint16)  # the issue's model size
    tifffile.imwrite(d / "good.tif", good, imagej=True, metadata={"axes": "TZYX"})
    big = rng.random((4, 4, 32, 32)).astype(np.float32)
    tifffile.imwrite(d / "full.tif", big, imagej=True, metadata={"axes": "TZYX"})
    raw = (d / "full.tif").read_bytes()
    (d / "trunc.tif").write_bytes(raw[: len(raw) // 3])  # an interrupted copy
    tifffile.imwrite(d / "ome.ome.tif", big, metadata={"axes": "TZYX"})
    raw = (d / "ome.ome.tif").read_bytes()
    (d / "trunc.ome.tif").write_bytes(raw[: len(raw) // 2])
    (d / "full.tif").unlink()
    (d / "ome.ome.tif").unlink()
    tifffile.imwrite(  # read as 4 colour channels (ZYXC) unless --axes says otherwise
        d / "chan.tif", rng.random((1, 1, 4, 4)).astype(np.float32), photometric="rgb"
    )
    tifffile.imwrite(
        d / "five.tif",
        rng.random((2, 2, 3, 8, 8)).astype(np.float32),
        imagej=True,
        metadata={"axes": "TZCYX"},
    )
    (d / "garbage.tif").write_bytes(b"II*\x00" + rng.bytes(200))
    (d / "empty.tif").write_bytes(b"")
    (d / "text.nii.gz").write_text("not a nifti")
    nan = rng.random((3, 2, 8, 8)).astype(np.float32)
    nan[1, 1, 2, 2] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "const.npy", np.ones((3, 2, 8, 8), np.float32))
    np.save(d / "six_d.npy", np.ones((2, 2, 2, 2, 8, 8), np.float32))
    (d / "folder.tif").mkdir()
    (d / "bad.yaml").write_text("steps: [1, 2\n")
    (d / "unknown.yaml").write_text("stepz: 10\n")
    (d / "negative.yaml").write_text("steps: -3\n")
    (d / "exists.tif").write_bytes(b"")
    (d / "incomplete.model").mkdir()
    (d / "incomplete.model" / "meta.json").write_text("{}")
    np.save(d / "complex.npy", np.ones((2, 2, 4, 4), np.complex64))
    (d / "notzarr.zarr").mkdir()
    (d / "notzarr.zarr" / "x").write_text("x")
    model = d / "m.linear"
    list(api.train(d / "good.tif", model, {"method": "linear"}))
    for name, damage in (
        ("badjson.model", lambda m: (m / "meta.json").write_text("{not json")),
        ("badinput.model", lambda m: (m / "input.npy").write_bytes(b"garbage")),
        ("badyaml.model", lambda m: (m / "config.yaml").write_text("method: [")),
    ):
        shutil.copytree(model, d / name)
        damage(d / name)
    return d


def _cases(d: Path) -> list[list[str]]:
    m = str(d / "m.linear")
    render = ["render", m, "-o"]
    return [
        # factors: absurd, zero, negative, not finite, not a number
        [*render, "out.tif", "--scale", "1e6"],
        [*render, "out.tif", "--scale-t", "1e6"],
        [*render, "out.ome.tif", "--scale", "1e6", "--force"],
        [*render, "out.ome.tif", "--scale-t", "1e6", "--scale", "100"],
        [*render, "out.zarr", "--scale-x", "1e8", "--force"],
        [*render, "out.nii.gz", "--scale-y", "1e9"],
        [*render, "out.tif", "--scale", "0"],
        [*render, "out.tif", "--scale-z", "-2"],
        [*render, "out.tif", "--scale", "nan"],
        [*render, "out.tif", "--scale-t", "inf"],
        [*render, "out.tif", "--scale", "abc"],
        [*render, "out.tif", "--chunk-mb", "0"],
        [*render, "out.zarr", "--chunk-mb", "1e12", "--scale", "100", "--force"],
        # ROIs and time ranges
        [*render, "out.tif", "--roi", "0", "9", "0", "16", "0", "16"],
        [*render, "out.tif", "--roi", "0", "1", "5", "5", "0", "16"],
        [*render, "out.tif", "--roi", "0", "1", "2"],
        [*render, "out.tif", "--t-range", "3", "1"],
        [*render, "out.tif", "--t-range", "0", "99"],
        [*render, "out.tif", "--t-range", "0.5", "0.5", "--scale-t", "1"],
        # outputs and models
        [*render, "out.png"],
        [*render, "/proc/forbidden.tif"],
        [*render, "nodir/out.tif"],
        [*render, "exists.tif"],
        [*render, "folder.tif/x/out.tif"],
        ["render", str(d / "incomplete.model"), "-o", "out.tif"],
        ["render", str(d / "missing.model"), "-o", "out.tif"],
        ["render", str(d / "good.tif"), "-o", "out.tif"],
        ["render", m, "-o", "out.tif", "--bogus"],
        ["render", m, "-o", "out.tif", "--workers", "0"],
        ["render", m, "-o", "notzarr.zarr", "--overwrite"],
        ["render", str(d / "badjson.model"), "-o", "out.tif"],
        ["render", str(d / "badinput.model"), "-o", "out.tif"],
        ["render", str(d / "badyaml.model"), "-o", "out.tif"],
        ["info", str(d / "missing.model")],
        # motion export: models without motion, broken models, bad outputs
        ["motion", m, "-o", "out.ome.tif"],
        ["motion", str(d / "incomplete.model"), "-o", "out.ome.tif"],
        ["motion", str(d / "missing.model"), "-o", "out.ome.zarr"],
        ["motion", str(d / "badjson.model"), "-o", "out.ome.tif"],
        ["motion", str(d / "badyaml.model"), "-o", "out.ome.tif"],
        ["motion", m, "-o", "out.png"],
        ["motion", m, "-o", "out.nii.gz"],
        ["motion", m, "-o", "/proc/forbidden.ome.tif"],
        ["motion", m, "-o", "exists.tif"],
        ["motion", m, "-o", "notzarr.zarr", "--overwrite"],
        # inputs
        ["train", "trunc.tif", "-o", "new.m", "--method", "linear"],
        ["train", "trunc.ome.tif", "-o", "new.m", "--method", "linear"],
        ["train", "chan.tif", "-o", "new.m", "--preset", "paper"],  # channels: the fast preset
        ["train", "five.tif", "-o", "new.m", "--motion-channel", "7"],
        ["train", "good.tif", "-o", "new.m", "--motion-channel", "0"],  # no channels
        ["train", "garbage.tif", "-o", "new.m", "--method", "linear"],
        ["train", "empty.tif", "-o", "new.m", "--method", "linear"],
        ["train", "text.nii.gz", "-o", "new.m", "--method", "linear"],
        ["train", "missing.tif", "-o", "new.m", "--method", "linear"],
        ["train", "folder.tif", "-o", "new.m", "--method", "linear"],
        ["train", "nan.npy", "-o", "new.m", "--method", "linear"],
        ["train", "const.npy", "-o", "new.m", "--method", "linear"],
        ["train", "six_d.npy", "-o", "new.m", "--method", "linear"],
        ["train", "complex.npy", "-o", "new.m", "--method", "linear"],
        # axes, channels, physical sizes
        ["train", "good.tif", "-o", "new.m", "--axes", "TZQX"],
        ["train", "good.tif", "-o", "new.m", "--axes", "ZYX"],
        ["train", "good.tif", "-o", "new.m", "--axes", "TTYX"],
        ["train", "good.tif", "-o", "new.m", "--channel", "3"],
        ["train", "five.tif", "-o", "new.m", "--channel", "7"],
        ["train", "good.tif", "-o", "new.m", "--voxel-size", "0", "1", "1"],
        ["train", "good.tif", "-o", "new.m", "--frame-interval", "-1"],
        # configs and budgets
        ["train", "good.tif", "-o", "new.m", "--config", "bad.yaml"],
        ["train", "good.tif", "-o", "new.m", "--config", "unknown.yaml"],
        ["train", "good.tif", "-o", "new.m", "--config", "negative.yaml"],
        ["train", "good.tif", "-o", "new.m", "--config", "missing.yaml"],
        ["train", "good.tif", "-o", "new.m", "--steps", "-5"],
        ["train", "good.tif", "-o", "new.m", "--time-limit", "-1"],
        ["train", "good.tif", "-o", "new.m", "--method", "bicubic"],
        # model outputs
        ["train", "good.tif", "-o", "/proc/forbidden"],
        ["train", "good.tif", "-o", "nodir/new.m"],
        ["train", "good.tif", "-o", m],
        ["train", "good.tif", "-o", "new.m", "--resume"],
        # evaluation
        ["evaluate", "good.tif", "--task", "temporal", "--factor", "1"],
        ["evaluate", "good.tif", "--task", "spatial", "--factor", "100"],
        ["evaluate", "trunc.tif", "--task", "temporal", "--factor", "2"],
        ["evaluate", "good.tif", "--task", "temporal", "--factor", "2", "-o", "/proc/r.json"],
        ["evaluate", "good.tif", "--task", "sideways", "--factor", "2"],
        ["evaluate", "good.tif", "--task", "temporal", "--factor", "2", "--time-limit", "nan"],
        ["evaluate", "good.tif", "--task", "temporal", "--factor", "2", "-o", "report.png"],
        ["demo", "-o", "/proc/demo"],
    ]


def test_bad_invocations_fail_cleanly(files, tmp_path):
    d = files
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cases = _cases(d)
    assert len(cases) >= 25
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps({"workdir": str(d), "watch": [str(d), str(tmp)], "cases": cases}))
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": SRC, "TMPDIR": str(tmp)}
    runner = Path(__file__).with_name("fuzz_runner.py")
    subprocess.run(
        [sys.executable, str(runner), str(spec), str(out)], env=env, check=True, timeout=600
    )
    results = json.loads(out.read_text())
    slow = sorted(results, key=lambda r: -r["seconds"])[:3]
    print("slowest:", [(" ".join(r["argv"][:2]), round(r["seconds"], 2)) for r in slow])
    print("peak RSS (MB):", max(r["max_rss_mb"] or 0 for r in results))
    problems = []
    for r in results:
        lines = r["stderr"].splitlines()
        why = []
        if r["rc"] != 2:
            why.append(f"exit status {r['rc']}")
        if len(lines) != 1:
            why.append(f"{len(lines)} lines on stderr")
        if "Traceback" in r["stderr"] or "unexpected error" in r["stderr"]:
            why.append("a traceback / unexpected error")
        if r["appeared"] or r["vanished"]:
            why.append(f"left {r['appeared']} / removed {r['vanished']}")
        if r["max_rss_mb"] is None or r["max_rss_mb"] >= RSS_LIMIT_MB:
            why.append(f"peak RSS {r['max_rss_mb']} MB")
        if r["timed_out"]:
            why.append("timed out")
        if why:
            problems.append(f"{' '.join(r['argv'])}: {', '.join(why)}: {r['stderr'][-600:]!r}")
    assert not problems, "\n".join(problems)
    assert not list(tmp.iterdir())


@pytest.mark.parametrize(
    ("flag", "size"), [("--scale", "24.6 ZB"), ("--scale-t", "30.7 GB")], ids=["scale", "scale-t"]
)
def test_must_absurd_render_exits_fast_and_small(files, tmp_path, flag, size):
    """Issue 13, Must: ``render MODEL -o out.tif --scale 1e6`` (and ``--scale-t 1e6``) exits 2
    within 10 s, names the size it would have needed, peaks below 1 GB."""
    argv = [sys.executable, "-m", "napari_spatimeinr.cli", "render", str(files / "m.linear")]
    argv += ["-o", str(tmp_path / "out.tif"), flag, "1e6"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, env={**os.environ, "PYTHONPATH": SRC}, stderr=subprocess.PIPE, text=True
    )
    _, err = proc.communicate(timeout=60)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert proc.returncode == 2
    assert len(err.splitlines()) == 1 and size in err, err
    assert seconds < 10
    assert rss_mb < RSS_LIMIT_MB  # the largest child so far: all of them stayed below
    assert not list(tmp_path.iterdir())
