"""The npe2 manifest: one file (root copy equal to the packaged one), valid, shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "src" / "napari_spatimeinr" / "napari.yaml"


def test_root_manifest_equals_packaged():
    assert (ROOT / "napari.yaml").read_text() == PACKAGED.read_text(), (
        "napari.yaml at the repo root must equal src/napari_spatimeinr/napari.yaml: copy it over"
    )


def test_manifest_names_match_the_launcher():
    from napari_spatimeinr import _napari_launch as launch

    man = yaml.safe_load(PACKAGED.read_text())
    c = man["contributions"]
    assert man["name"] == launch.PLUGIN
    assert launch.SAMPLE in [s["key"] for s in c["sample_data"]]
    names = [w["display_name"] for w in c["widgets"]]
    assert set(launch.WIDGETS) <= set(names) and "Quality control" in names
    assert all(cmd["id"].startswith("napari-spatimeinr.") for cmd in c["commands"])


def test_npe2_validate_with_imports():
    r = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-spatimeinr", "--imports"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_wheel_ships_the_manifest(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    [whl] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert "napari_spatimeinr/napari.yaml" in names
    eps = next(n for n in names if n.endswith("entry_points.txt"))
    assert "napari_spatimeinr:napari.yaml" in zipfile.ZipFile(whl).read(eps).decode()


def test_reader_offered_only_for_its_file_types(tmp_path):
    """No catch-all pattern: opening a .png never asks whether this plugin should read it."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()

    def ours(path):
        return "napari-spatimeinr" in {r.plugin_name for r in pm.iter_compatible_readers([path])}

    assert not ours(str(tmp_path / "photo.png"))
    assert not ours(str(tmp_path / "table.csv"))
    for name in ("a.tif", "a.ome.tif", "a.nii.gz", "a.npy", "a.czi", "a.nd2", "a.lif"):
        assert ours(str(tmp_path / name)), name
    model = tmp_path / "any-name"  # a model folder of any name (get_reader checks its content)
    model.mkdir()
    assert ours(str(model))
