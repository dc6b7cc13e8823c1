"""One model, many stacks (issue #14): render another stack (--input), batch renders, warm starts
(--init-from) and one model trained on several stacks. Tiny synthetic 2D+t stacks, CPU."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_spatimeinr import api
from napari_spatimeinr.cli import main
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.render.apply import MismatchWarning, apply_model, expand_inputs

SHAPE = (5, 1, 32, 32)


def moving_noisy(seed: int, shape=SHAPE) -> np.ndarray:
    """Smooth structure drifting 1 voxel per frame along x, with strong noise (a refiner learns to
    denoise it within a few dozen steps, so warm and cold starts differ)."""
    rng = np.random.default_rng(seed)
    t, z, y, x = shape
    base = ndimage.gaussian_filter(rng.random((z, y + 16, x + 16)), (0.8, 3, 3))
    base = (base - base.min()) / np.ptp(base) * 1000 + 100
    frames = np.stack([np.roll(base, i, axis=2)[:, 8 : 8 + y, 8 : 8 + x] for i in range(t)])
    return np.clip(frames + rng.normal(0, 80, frames.shape), 0, None)


def write_tif(path: Path, seed: int, shape=SHAPE) -> Path:
    tifffile.imwrite(
        path,
        np.round(moving_noisy(seed, shape)).astype(np.uint16),
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZYX", "spacing": 1.0, "unit": "um", "finterval": 30.0},
    )
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fast model trained on stack a.tif (200 steps: its held-out PSNR beats the untrained
    refiner, so its weights are trained ones), plus b.tif and c.tif of the same kind."""
    root = tmp_path_factory.mktemp("reuse")
    a = write_tif(root / "a.tif", 1)
    write_tif(root / "b.tif", 2)
    write_tif(root / "c.tif", 3)
    model = root / "a.spatimeinr"
    for _ in api.train(a, model, {"steps": 200, "device": "cpu"}):
        pass
    return root, model


def test_render_input_uses_the_other_stack_and_never_writes_the_model(trained, tmp_path):
    root, model = trained
    before = tree(model)
    own = api.render(model, scale_t=2, device="cpu").compute()
    other = api.render(
        model, scale_t=2, device="cpu", input=root / "b.tif", cache_dir=tmp_path / "cache"
    ).compute()
    assert own.shape == other.shape == (9, 1, 32, 32)
    assert np.abs(own - other).mean() > 1.0  # another stack, not the training one
    b = tifffile.imread(root / "b.tif").astype(np.float32)  # measured frames of b, in b's units
    err_b = np.abs(other[::2, 0] - b).mean()
    err_a = np.abs(own[::2, 0] - b).mean()
    assert err_b < 0.5 * err_a
    assert tree(model) == before  # flows and normalization of b went to the cache
    plan = api.plan_render(
        model, scale_t=2, input=root / "b.tif", cache_dir=tmp_path / "cache", device="cpu"
    )
    prov = plan.meta.provenance
    assert prov["source_name"] == "b.tif" and prov["model_dir"] == str(model.resolve())
    assert prov["applied"]["model_source_name"] == "a.tif"
    cached = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(cached) == 1 and (cached[0] / "flows.npz").is_file()


def test_applied_directory_is_reused_until_the_weights_change(trained, tmp_path):
    root, model = trained
    stack = api.read(root / "c.tif")
    first = apply_model(model, stack, tmp_path)
    again = apply_model(model, stack, tmp_path)
    assert not first.reused and again.reused
    assert again.model_dir.path == first.model_dir.path


def test_cli_render_input_one_file(trained, tmp_path, capsys):
    root, model = trained
    out = tmp_path / "b_t2.tif"
    code, _, err = run(
        capsys,
        "render",
        model,
        "--input",
        root / "b.tif",
        "-o",
        out,
        "--scale-t",
        "2",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert code == 0, err
    back = api.read(out)
    assert back.shape == (9, 1, 32, 32)
    prov = back.extra["provenance"]
    assert prov["source_name"] == "b.tif" and prov["applied"]["model_source_name"] == "a.tif"


def test_axes_mismatch_is_one_message(trained, tmp_path, capsys):
    root, model = trained
    vol = write_tif(tmp_path / "vol.tif", 4, shape=(5, 3, 32, 32))
    code, out, err = run(
        capsys, "render", model, "--input", vol, "-o", tmp_path / "v.tif", "--cache-dir", tmp_path
    )
    assert code != 0 and out == ""
    lines = [ln for ln in err.splitlines() if ln.startswith("spatimeinr: error")]
    assert len(lines) == 1 and "2D+t" in lines[0] and "3D+t" in lines[0]
    assert not (tmp_path / "v.tif").exists()


def test_far_voxel_size_warns_what_to_expect(trained, tmp_path):
    root, model = trained
    stack = api.read(root / "b.tif", voxel_size=(1.0, 1.0, 1.0))  # 5x the training stack's
    with pytest.warns(MismatchWarning, match="voxel size along [yx]"):
        api.render(model, input=stack, cache_dir=tmp_path, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.render(model, input=root / "b.tif", cache_dir=tmp_path, device="cpu")


def test_glob_matching_nothing_is_one_message(trained, tmp_path, capsys):
    _, model = trained
    code, _, err = run(
        capsys, "render", model, "--input", str(tmp_path / "none" / "*.tif"), "-o", tmp_path / "o/"
    )
    assert code != 0
    assert err.count("spatimeinr: error") == 1 and "No stack matches" in err
    with pytest.raises(SpatimeINRError, match="No stack matches"):
        expand_inputs([str(tmp_path / "*.nii.gz")])


def test_batch_goes_on_after_a_bad_stack_and_refuses_a_full_folder(trained, tmp_path, capsys):
    root, model = trained
    src = tmp_path / "in"
    src.mkdir()
    for name in ("b", "c"):
        (src / f"{name}.tif").write_bytes((root / f"{name}.tif").read_bytes())
    (src / "broken.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    argv = ["render", model, "--input", str(src / "*.tif"), "-o", f"{out}/", "--scale-t", "2"]
    argv += ["--cache-dir", tmp_path / "cache"]
    code, stdout, err = run(capsys, *argv)
    assert code != 0
    lines = stdout.splitlines()
    assert len(lines) == 3  # one result line per stack
    assert sum(ln.startswith("OK ") for ln in lines) == 2
    assert "broken.tif" in [ln for ln in lines if ln.startswith("FAILED")][0]
    assert "1 of 3 stack(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["b.tif", "c.tif"]
    stamp = (out / "b.tif").stat().st_mtime_ns
    code, stdout, err = run(capsys, *argv)  # the folder now holds files
    assert code != 0 and "--overwrite" in err and stdout == ""
    assert (out / "b.tif").stat().st_mtime_ns == stamp
    (src / "broken.tif").unlink()
    code, stdout, err = run(capsys, *argv, "--overwrite")
    assert code == 0, err
    assert (out / "b.tif").stat().st_mtime_ns != stamp


def _first_loss(model: Path) -> float:
    rows = api.open_model(model).read_history()
    return next(r["loss"] for r in rows if r["step"] == 1)


def test_init_from_records_the_source_and_starts_from_its_weights(trained, tmp_path, capsys):
    root, model = trained
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    code, _, err = run(capsys, "train", root / "b.tif", "-o", cold, "--steps", "1", "-q")
    assert code == 0, err
    code, _, err = run(
        capsys, "train", root / "b.tif", "-o", warm, "--steps", "1", "--init-from", model, "-q"
    )
    assert code == 0, err
    rec = json.loads((warm / "meta.json").read_text())["init_from"]
    assert rec["model_dir"] == str(model.resolve()) and rec["source_name"] == "a.tif"
    assert rec["train_steps"] == 200
    assert _first_loss(warm) < 0.95 * _first_loss(cold)


def test_init_from_an_incompatible_model_is_one_message(trained, tmp_path, capsys):
    root, model = trained
    vol = write_tif(tmp_path / "vol.tif", 4, shape=(5, 3, 32, 32))
    code, _, err = run(capsys, "train", vol, "-o", tmp_path / "m", "--init-from", model)
    assert code != 0 and err.count("spatimeinr: error") == 1 and "--init-from" in err
    assert not (tmp_path / "m").exists()
    cubic = tmp_path / "cubic"
    assert run(capsys, "train", root / "b.tif", "-o", cubic, "--method", "cubic")[0] == 0
    code, _, err = run(capsys, "train", root / "b.tif", "-o", tmp_path / "n", "--init-from", cubic)
    assert code != 0 and "no trained SpatimeINR weights" in err


def test_one_model_on_several_stacks_renders_each(trained, tmp_path, capsys):
    root, _ = trained
    model = tmp_path / "bc.spatimeinr"
    code, _, err = run(
        capsys, "train", root / "b.tif", root / "c.tif", "-o", model, "--steps", "5", "-q"
    )
    assert code == 0, err
    meta = json.loads((model / "meta.json").read_text())
    assert [s["name"] for s in meta["stacks"]] == ["b", "c"]
    assert (model / "flows.npz").is_file() and (model / "stacks/1/flows.npz").is_file()
    assert meta["shape"] == list(SHAPE)  # the single-stack layout holds the first stack
    code, out, _ = run(capsys, "info", model, "--json")
    assert json.loads(out)["stacks"] == [f"b {SHAPE}", f"c {SHAPE}"]
    before = tree(model)
    for name in ("b", "c"):
        out = tmp_path / f"{name}.tif"
        code, _, err = run(
            capsys, "render", model, "--input", root / f"{name}.tif", "-o", out, "--cache-dir",
            tmp_path / "cache",
        )  # fmt: skip
        assert code == 0, err
        got = tifffile.imread(out).astype(np.float32)
        truth = tifffile.imread(root / f"{name}.tif").astype(np.float32)
        assert np.abs(got - truth).mean() < 0.5 * np.abs(truth - truth.mean()).mean()
    assert tree(model) == before
    # the stored flows of c were reused, not solved again
    cached = next(p for p in (tmp_path / "cache").iterdir() if p.name.startswith("c-"))
    assert (cached / "flows.npz").read_bytes() == (model / "stacks/1/flows.npz").read_bytes()


def test_several_stacks_of_different_kinds_are_refused(tmp_path):
    a = Stack4D(moving_noisy(1))
    b = Stack4D(moving_noisy(2, (5, 3, 32, 32)))
    with pytest.raises(SpatimeINRError, match="all be 2D\\+t or all 3D\\+t"):
        next(iter(api.train([a, b], tmp_path / "m", {"steps": 2})))
    with pytest.raises(SpatimeINRError, match="fast preset only"):
        next(iter(api.train([a, a], tmp_path / "m", {"method": "cubic"})))
    assert isinstance(a, Stack4D) and not (tmp_path / "m").exists()
