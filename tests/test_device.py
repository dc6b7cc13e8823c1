"""Devices: auto picks CUDA, then an Apple GPU (MPS), then the CPU; a missing GPU is refused in one
line; an operation the Apple GPU lacks ends in one line that says what to do. No GPU needed: the
availability checks are monkeypatched."""

import importlib
import os

import numpy as np
import pytest
import tifffile
import torch

import napari_spatimeinr
from napari_spatimeinr.cli import main
from napari_spatimeinr.core import device as dev
from napari_spatimeinr.core.config import RenderConfig, TrainConfig
from napari_spatimeinr.core.errors import SpatimeINRError


@pytest.fixture
def gpus(monkeypatch):
    """Set which GPUs torch reports: ``gpus(cuda=True, mps=False)``."""

    def set_(cuda: bool = False, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_


@pytest.mark.parametrize(
    "cuda, mps, want",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(gpus, cuda, mps, want):
    gpus(cuda=cuda, mps=mps)
    assert dev.resolve_device("auto") == want
    assert dev.resolve_device("cpu") == "cpu"
    assert dev.usable_devices() == [
        "auto",
        "cpu",
        *(["cuda"] if cuda else []),
        *(["mps"] if mps else []),
    ]


def test_named_gpu_used_or_refused_in_one_line(gpus):
    gpus(cuda=False, mps=True)
    assert dev.resolve_device("mps") == "mps"
    with pytest.raises(SpatimeINRError, match="no CUDA GPU") as e:
        dev.resolve_device("cuda")
    assert "\n" not in str(e.value)
    gpus(cuda=True, mps=False)
    assert dev.resolve_device("cuda") == "cuda"
    with pytest.raises(SpatimeINRError, match=r"no Apple GPU \(MPS\)") as e:
        dev.resolve_device("mps")
    assert "\n" not in str(e.value) and "use auto or cpu" in str(e.value)
    with pytest.raises(SpatimeINRError, match="choose auto, cpu, cuda or mps"):
        dev.check_device("metal")


def test_config_accepts_mps():
    assert TrainConfig(device="mps").device == "mps"
    assert RenderConfig(device="mps").device == "mps"
    with pytest.raises(Exception, match="mps"):  # the refusal lists the choices
        TrainConfig(device="gpu")


@pytest.fixture
def movie(tmp_path):
    data = np.random.default_rng(0).integers(0, 500, (3, 1, 12, 10), dtype=np.uint16)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{movie}", "-o", "{tmp}/m", "--method", "cubic", "--device", "mps"],
        ["render", "{tmp}/missing_model", "-o", "{tmp}/o.tif", "--device", "mps"],
        ["motion", "{tmp}/missing_model", "-o", "{tmp}/v.ome.tif", "--device", "mps"],
    ],
)
def test_cli_refuses_mps_without_one_before_any_work(gpus, movie, tmp_path, capsys, argv):
    gpus(cuda=False, mps=False)
    code = main([a.format(movie=movie, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no Apple GPU (MPS)" in err, err
    assert not (tmp_path / "m").exists() and not (tmp_path / "o.tif").exists()


MPS_MISSING = (
    "The operator 'aten::grid_sampler_3d' is not currently implemented for the MPS device. If "
    "you want this op to be considered for addition please comment on the issue.\nAs a "
    "temporary fix, you can set the environment variable `PYTORCH_ENABLE_MPS_FALLBACK=1`"
)


def test_missing_mps_operation_is_one_line(monkeypatch):
    monkeypatch.delenv(dev.MPS_FALLBACK, raising=False)
    with pytest.raises(SpatimeINRError) as e, dev.device_errors():
        raise NotImplementedError(MPS_MISSING)
    msg = str(e.value)
    assert "\n" not in msg and "aten::grid_sampler_3d" in msg
    assert "--device cpu" in msg and "PYTORCH_ENABLE_MPS_FALLBACK=1" in msg
    monkeypatch.setenv(dev.MPS_FALLBACK, "1")
    with pytest.raises(SpatimeINRError, match="fallback could not") as e, dev.device_errors():
        raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't")
    # other errors are not the device's: they pass unchanged
    for exc in (NotImplementedError("no such thing"), RuntimeError("MPS backend out of memory")):
        with pytest.raises(type(exc)), dev.device_errors():
            raise exc


def test_train_says_what_the_apple_gpu_lacks(movie, tmp_path, monkeypatch):
    from napari_spatimeinr import api
    from napari_spatimeinr.workflows import train as wtrain

    class Lacking:
        def train(self, md, cfg, stop):
            yield from ()
            raise NotImplementedError(MPS_MISSING)

    monkeypatch.setattr(wtrain, "get_method", lambda name: Lacking())
    with pytest.raises(SpatimeINRError, match="Apple GPU .MPS. lacks an operation"):
        list(api.train(movie, tmp_path / "m", {"method": "cubic"}))


def test_render_says_what_the_apple_gpu_lacks(monkeypatch):
    from napari_spatimeinr.render import lazy

    class Norm:
        def invert(self, a):
            return a

    class Lacking:
        def render_block(self, *a, **k):
            raise NotImplementedError(MPS_MISSING)

    md = type("MD", (), {"norm": Norm()})()
    monkeypatch.setattr(lazy, "get_renderer", lambda path, device: (md, Lacking()))
    z = np.zeros(1)
    with pytest.raises(SpatimeINRError, match="Apple GPU .MPS. lacks an operation"):
        lazy._render_task("m", "mps", z, z, z, z, (1.0, 1.0, 1.0, 1.0))


def test_mps_fallback_switched_on_on_macs_only(monkeypatch):
    try:
        for platform, preset, want in [
            ("darwin", None, "1"),
            ("darwin", "0", "0"),  # the user's choice stays
            ("linux", None, None),
        ]:
            monkeypatch.setattr("sys.platform", platform)
            if preset is None:
                monkeypatch.delenv(dev.MPS_FALLBACK, raising=False)
            else:
                monkeypatch.setenv(dev.MPS_FALLBACK, preset)
            importlib.reload(napari_spatimeinr)
            assert os.environ.get(dev.MPS_FALLBACK) == want, platform
    finally:
        monkeypatch.undo()
        importlib.reload(napari_spatimeinr)
