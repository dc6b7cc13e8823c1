"""Model directories written by earlier versions still open, render the same and export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_spatimeinr import api
from napari_spatimeinr.cli import main

DATA = Path(__file__).parent / "data" / "models_v1"


@pytest.mark.parametrize("name", ["fast", "cubic"])
def test_a_model_directory_of_the_earlier_layout_renders_as_before(tmp_path, name):
    model = tmp_path / name
    shutil.copytree(DATA / name, model)  # rendering must not need to write into the model
    expected = np.load(DATA / f"{name}_t2_z2.npy")
    got = api.render(model, scale_t=2, scale_zyx=(2, 1, 1)).compute()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    out = tmp_path / f"{name}.tif"
    assert main(["render", str(model), "-o", str(out), "--scale-t", "2", "--scale-z", "2"]) == 0
    np.testing.assert_allclose(
        tifffile.imread(out).reshape(expected.shape), expected, rtol=1e-5, atol=1e-3
    )
    assert main(["info", str(model)]) == 0
