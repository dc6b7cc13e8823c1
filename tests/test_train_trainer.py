"""The SpatimeINR trainer: progress records, stop, checkpoints, deterministic resume, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_spatimeinr import api
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.engines.presets import PRESETS
from napari_spatimeinr.store.model_dir import ModelDir

TINY = dict(
    latent_dim=4,
    encoder_features=4,
    encoder_groups=1,
    encoder_blocks=1,
    pe_frequencies=2,
    mlp_width=8,
    mlp_depth=2,
    batch_size=256,
    patch_size=8,
    refine_width=4,
    refine_depth=2,
)
#: both engines: the motion engine (fast) and the INR of the paper
PRESET_NAMES = ("fast", "paper")


def _stack(seed: int = 0) -> Stack4D:
    rng = np.random.default_rng(seed)
    return Stack4D(rng.random((5, 4, 10, 10)).astype(np.float32) * 100)


def _stop_after(n: int, model: Path):
    """A stop() that turns True at its n-th call during training steps.

    The motion engine also polls stop() while it computes optical flows (before any step); those
    calls (made before flows.npz exists) are not counted.
    """
    calls = []

    def stop() -> bool:
        if (model / "config.yaml").is_file() and not _training(model):
            return False
        calls.append(1)
        return len(calls) >= n

    return stop


def _training(model: Path) -> bool:
    """True once training steps can run: always for the INR, after the flows for the motion engine."""
    cfg = yaml.safe_load((model / "config.yaml").read_text())
    return cfg.get("preset") == "paper" or (model / "flows.npz").is_file()


def _cfg(**kw) -> dict:
    return dict(dict(steps=8, seed=3, device="cpu", params=dict(TINY)), **kw)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_progress_records_and_files(tmp_path, preset):
    recs = list(api.train(_stack(), tmp_path / "m", _cfg(preset=preset)))
    assert recs[-1].done and recs[-1].step == 8 and recs[-1].total == 8
    assert all(not r.done for r in recs[:-1])
    assert recs[-1].psnr is not None and np.isfinite(recs[-1].psnr)
    lr0, lr1 = PRESETS[preset]["lr"], PRESETS[preset]["lr_final"]
    assert recs[-1].lr == pytest.approx(lr0 + (lr1 - lr0) * 7 / 8)  # linear decay
    md = ModelDir(tmp_path / "m")
    w = torch.load(md.path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in w.values())
    ck = torch.load(md.path / "checkpoint.pt", weights_only=True)
    assert int(ck["step"]) == 8 and "optimizer" in ck and "generator" in ck
    # model.pt holds the weights with the best held-out PSNR (the untrained model counts)
    assert md.meta["heldout_psnr"] == pytest.approx(recs[-1].psnr)
    assert recs[-1].psnr >= recs[-1].extra["last_psnr"] - 1e-9
    assert md.meta["train_steps"] == 8 and md.meta["train_seconds"] > 0
    assert md.read_history()[-1]["step"] == 8


def test_stop_finishes_step_and_checkpoints(tmp_path):
    stop = _stop_after(3, tmp_path / "m")
    # the time engine's loop (the z decoder trains first and would not count as steps here)
    cfg = _cfg(steps=1000, params=dict(TINY, spatial=False))
    recs = list(api.train(_stack(), tmp_path / "m", cfg, stop=stop))
    assert recs[-1].done and recs[-1].step == 3
    assert int(torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)["step"]) == 3


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_resume_gives_identical_weights(tmp_path, preset):
    list(api.train(_stack(), tmp_path / "a", _cfg(preset=preset)))
    stop = _stop_after(4, tmp_path / "b")
    list(api.train(_stack(), tmp_path / "b", _cfg(preset=preset), stop=stop))
    assert int(torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"]) == 4
    recs = list(api.train(None, tmp_path / "b", _cfg(preset=preset), resume=True))
    assert recs[-1].step == 8
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in ca["model"]:  # the current (not only the best) weights too
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    # a different seed gives different weights (the check above can fail)
    list(api.train(_stack(), tmp_path / "c", _cfg(seed=4, preset=preset)))
    wc = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_sigkill_then_resume_carries_on(tmp_path):
    src = tmp_path / "in.npy"
    np.save(src, _stack().data)
    cfg = tmp_path / "c.yaml"
    # the z decoder trains first and is not checkpointed mid-way (a kill redoes it): off here
    params = dict(TINY, spatial=False)
    cfg.write_text(yaml.safe_dump(_cfg(steps=100000, checkpoint_every=0.2, params=params)))
    model = tmp_path / "m"
    cmd = [sys.executable, "-m", "napari_spatimeinr.cli", "train", str(src), "-o", str(model)]
    proc = subprocess.Popen(
        [*cmd, "--axes", "TZYX", "--config", str(cfg), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 60
        ck = model / "checkpoint.pt"
        while time.time() < deadline:
            if ck.is_file() and int(torch.load(ck, weights_only=True)["step"]) >= 5:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("no checkpoint within 60 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = int(torch.load(ck, weights_only=True)["step"])
    assert saved >= 5
    torch.load(model / "model.pt", weights_only=True)  # complete, loadable files
    recs = list(api.train(None, model, {"steps": saved + 3}, resume=True))
    assert recs[-1].done and recs[-1].step == saved + 3
    assert not any(Path(model).glob(".*.tmp"))
    blk = api.render(model, scale_t=2)
    assert blk.shape[0] == 9 and np.isfinite(np.asarray(blk[:2])).all()


def test_resume_refuses_a_stack_of_another_shape(tmp_path):
    """An in-memory stack (no file to hash) is compared by shape: another stack is refused."""
    list(api.train(_stack(), tmp_path / "m", _cfg(steps=2)))
    other = Stack4D(np.zeros((5, 4, 12, 10), np.float32))
    with pytest.raises(SpatimeINRError, match="--resume: .* was trained on .*other data"):
        list(api.train(other, tmp_path / "m", {"steps": 4}, resume=True))
    recs = list(api.train(_stack(), tmp_path / "m", {"steps": 4}, resume=True))
    assert recs[-1].done and recs[-1].step == 4
