"""End to end on CPU: train the default preset on a synthetic time-lapse with every other frame left
out, render at the left-out instants through api.render, and compare with linear and cubic.

The reference is the *noisy* synthetic stack (Poisson + read noise, as a microscope gives), since the
synthetic generator returns only that; on the left-out frames every method is scored against it.
"""

from __future__ import annotations

import numpy as np

from conftest import run_generator
from napari_spatimeinr import api
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.data.synthetic import make_nuclei_timelapse
from napari_spatimeinr.engines.classical import interpolate_block
from napari_spatimeinr.workflows.evaluate.baselines import motion_interpolate

TIME_LIMIT = 30.0


def _psnr(pred: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    return float(10 * np.log10(data_range**2 / np.mean((pred - truth) ** 2)))


def test_fast_preset_beats_linear_and_cubic_on_left_out_frames(tmp_path):
    full = make_nuclei_timelapse((9, 8, 48, 48), seed=1)
    truth = full.data
    inp = Stack4D(truth[::2].copy(), voxel_size=full.voxel_size, frame_interval=2.0)
    cfg = {"time_limit": TIME_LIMIT, "seed": 0, "device": "cpu", "params": {"sr_axes": "T"}}
    recs = list(api.train(inp, tmp_path / "m", cfg))
    assert recs[-1].done
    out = np.asarray(api.render(tmp_path / "m", scale_t=2))
    assert out.shape == truth.shape
    lo, hi = np.percentile(truth, [0.1, 99.9])
    odd = slice(1, None, 2)
    t = np.arange(truth.shape[0]) / 2.0
    zyx = [np.arange(n, dtype=float) for n in truth.shape[1:]]
    scores = {
        name: _psnr(interpolate_block(inp.data, t, *zyx, order)[odd], truth[odd], hi - lo)
        for name, order in (("linear", 1), ("cubic", 3))
    }
    motion = run_generator(motion_interpolate(inp.data, 2))
    scores["motion"] = _psnr(motion[odd], truth[odd], hi - lo)
    ours = _psnr(out[odd], truth[odd], hi - lo)
    assert ours > max(scores["linear"], scores["cubic"]), (ours, scores)
    # the learned refinement keeps the weights that do best on held-out voxels: never much below
    # the motion-compensated interpolation it starts from
    assert ours > scores["motion"] - 0.2, (ours, scores)
