import json

import numpy as np
import pytest
import torch

from napari_spatimeinr.core.config import TrainConfig
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.store.model_dir import ModelDir, atomic_write, create_model_dir


def test_create_and_open(tmp_path, small_stack):
    md = create_model_dir(tmp_path / "m", small_stack, TrainConfig(method="cubic"))
    again = ModelDir(tmp_path / "m")
    assert again.shape == small_stack.shape
    assert again.voxel_size == (1.0, 0.2, 0.2)
    assert again.frame_interval == 30.0
    assert again.config.method == "cubic"
    # normalized input maps back to the raw data
    np.testing.assert_allclose(md.norm.invert(np.asarray(md.input)), small_stack.data, rtol=1e-5)
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    for key in (
        "format_version",
        "method",
        "source_sha256",
        "shape",
        "axes",
        "voxel_size",
        "frame_interval",
        "normalization",
        "train_steps",
        "train_seconds",
    ):
        assert key in meta
    assert (tmp_path / "m" / "history.csv").read_text().startswith("step,loss,psnr,lr,seconds")
    # no temporary leftovers beside it
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_refuses_bad_stacks(tmp_path):
    nan = np.ones((2, 2, 4, 4), np.float32)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(SpatimeINRError, match="NaN"):
        create_model_dir(tmp_path / "a", Stack4D(nan), TrainConfig(method="cubic"))
    with pytest.raises(SpatimeINRError, match="constant"):
        create_model_dir(
            tmp_path / "b", Stack4D(np.ones((2, 2, 4, 4))), TrainConfig(method="cubic")
        )
    assert not list(tmp_path.iterdir())


def test_incomplete_dir_message(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(SpatimeINRError, match="not a complete model directory"):
        ModelDir(tmp_path / "m")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def test_weights_only_roundtrip(tmp_path, small_stack):
    md = create_model_dir(tmp_path / "m", small_stack, TrainConfig(method="cubic"))
    md.write_atomic("model.pt", lambda fh: torch.save({"w": torch.ones(3)}, fh))
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert torch.equal(state["w"], torch.ones(3))
    md.write_history([{"step": 1, "loss": 0.5, "psnr": 20.0, "lr": 1e-3, "seconds": 0.1}])
    assert md.read_history()[0]["psnr"] == 20.0


def test_files_are_readable_by_others_like_plain_files(tmp_path, small_stack):
    import os
    import stat

    from napari_spatimeinr.store.model_dir import default_mode

    md = create_model_dir(tmp_path / "m", small_stack, TrainConfig(method="cubic"))
    md.update_meta(train_steps=1)
    for p in (tmp_path / "m", tmp_path / "m" / "meta.json"):
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == default_mode(directory=p.is_dir())


def test_resume_removes_what_a_killed_writer_left(tmp_path, small_stack):
    """A SIGKILL mid-write leaves ``.NAME.XXXX.tmp``; the resumed run cleans it, nothing else."""
    md = create_model_dir(tmp_path / "m", small_stack, TrainConfig(method="cubic"))
    stale = tmp_path / "m" / ".model.pt.abc123.tmp"
    stale.write_bytes(b"half")
    keep = tmp_path / "m" / "notes.tmp"  # not our pattern: a user's file stays
    keep.write_bytes(b"mine")
    assert md.remove_stale_temporaries() == [stale]
    assert not stale.exists() and keep.read_bytes() == b"mine"
    assert ModelDir(tmp_path / "m").input.shape == small_stack.shape
