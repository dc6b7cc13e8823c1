"""'Copy command' and 'Save job script…' in the Train and Render & Export widgets (issue 14).

The copied line is run in bash, as a user would paste it: the model it trains has the config the
widget would have trained with, and the render it writes has the widget's output grid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtWidgets import QApplication  # noqa: E402

import napari_spatimeinr  # noqa: E402
from napari_spatimeinr import api  # noqa: E402
from napari_spatimeinr._reader import read_stack_layer  # noqa: E402
from napari_spatimeinr._widgets.render import RenderWidget  # noqa: E402
from napari_spatimeinr._widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.gui

#: a folder name a shell would split and unquote: spaces, a quote, a dollar sign
ODD = "my data's $dir"


def _shell(line: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``line`` in bash with this checkout's package and console scripts first."""
    src = str(Path(napari_spatimeinr.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join(
        [sysconfig.get_path("scripts"), str(Path(sys.executable).parent), env.get("PATH", "")]
    )
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, env=env, timeout=timeout
    )


def _bash_n(path: Path) -> None:
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def stack_file(tmp_path) -> Path:
    """A tiny 2D+t ImageJ TIFF (T=5, Y=24, X=20) in a folder with an awkward name."""
    import tifffile
    from scipy import ndimage

    rng = np.random.default_rng(0)
    data = (ndimage.gaussian_filter(rng.random((5, 24, 20)), 1.5) * 1000 + 100).astype(np.float32)
    folder = tmp_path / ODD
    folder.mkdir()
    path = folder / "stack one.tif"
    tifffile.imwrite(
        path, data, imagej=True, metadata={"axes": "TYX", "finterval": 30.0}, resolution=(5, 5)
    )
    return path


@pytest.fixture
def viewer(make_napari_viewer, stack_file):
    viewer = make_napari_viewer()
    data, kw, _ = read_stack_layer(stack_file)[0]
    viewer.add_image(data, **kw)
    return viewer


def test_copied_train_command_trains_the_guis_config(viewer, qtbot, stack_file, tmp_path):
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    out = stack_file.parent / "model one.spatimeinr"
    w.out_edit.setText(str(out))
    # non-default values everywhere the CLI reads them: physical sizes, budget, a hyperparameter,
    # and the preview's checkpoint interval (preview on)
    w.voxel_spins[1].setValue(0.3)
    w.interval_spin.setValue(20.0)
    w.time_spin.setValue(30)
    w.steps_spin.setValue(2)
    w.advanced.inputs["refine_width"].setText("8")
    assert w.preview_check.isChecked()
    assert w.validate(), w.error_label.text()
    gui_config, gui_stack = w.config(), w.stack()
    assert gui_config.checkpoint_every != type(gui_config)().checkpoint_every

    w.copy_btn.click()
    line = QApplication.clipboard().text()
    assert line.startswith("spatimeinr train ") and "--set params.refine_width=8" in line
    done = _shell(line)
    assert done.returncode == 0, done.stderr[-2000:]

    md = api.open_model(out)
    assert md.config == gui_config  # config.yaml: everything the GUI would have trained with
    assert md.shape == gui_stack.shape
    assert tuple(md.voxel_size) == pytest.approx(gui_stack.voxel_size)
    assert md.frame_interval == pytest.approx(gui_stack.frame_interval)

    # the job script holds that same line and is valid bash; an existing file is not replaced
    script = tmp_path / "job dir" / "train it's.sbatch"
    script.parent.mkdir()
    assert w.save_job_script(script) == script
    _bash_n(script)
    text = script.read_text()
    assert line in text.splitlines() and "#SBATCH --time=" in text and "#SBATCH --mem=" in text
    assert "--gres" not in text.replace("'--gres=gpu:1'", "")  # device auto: a hint only
    assert w.save_job_script(script) is None and "already exists" in w.error_label.text()
    assert script.read_text() == text

    # the render of that model: the copied line writes the widget's output grid
    r = RenderWidget(viewer)
    qtbot.addWidget(r)
    r.add_model(out)
    r.scale_t.setValue(2.0)
    r.scale_x.setValue(1.5)
    r.dtype_combo.setCurrentText("uint16")
    target = tmp_path / "render dir" / "it's x2.tif"
    target.parent.mkdir()
    r.path_edit.setText(str(target))
    shape = r.plan().shape
    r.copy_btn.click()
    line = QApplication.clipboard().text()
    assert line.startswith("spatimeinr render ")
    done = _shell(line)
    assert done.returncode == 0, done.stderr[-2000:]
    import tifffile

    assert api.read(target).shape == shape and tifffile.imread(target).dtype == np.uint16
    script = tmp_path / "job dir" / "render.sbatch"
    assert r.save_job_script(script) == script
    _bash_n(script)
    assert line in script.read_text().splitlines()


def test_a_layer_without_file_is_refused_with_the_fix(viewer, qtbot):
    viewer.add_image(np.zeros((3, 8, 8), np.float32), name="drawn")
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    w.layer_combo.setCurrentText("drawn")
    QApplication.clipboard().setText("unchanged")
    assert w.copy_command() == ""
    assert "not read from a file" in w.error_label.text() and "Save" in w.error_label.text()
    assert QApplication.clipboard().text() == "unchanged"
    r = RenderWidget(viewer)
    qtbot.addWidget(r)
    r.path_edit.setText("")
    assert r.copy_command() == "" and r.error_label.text()  # no model yet, or no output file
    r.path_edit.setText("out.png")
    assert r.copy_command() == "" and r.error_label.text()  # no model yet, or an unknown type
    assert QApplication.clipboard().text() == "unchanged"
