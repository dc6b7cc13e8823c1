"""The plugin's dock fits a laptop screen: no control clipped on the right, no squeezed section.

The docks are the ones ``spatimeinr-napari`` opens (titles containing "spatimeinr"); every visible
control of every tab (and the Advanced form, for both engines) must end inside the viewport of the
scroll area holding it, and each dock must be at least 250 px tall (its steps are tabs).
"""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QPoint  # noqa: E402
from qtpy.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QLabel,
    QLineEdit,
    QProgressBar,
    QScrollArea,
    QScrollBar,
    QTabWidget,
)

from napari_spatimeinr import _napari_launch as launch  # noqa: E402
from napari_spatimeinr._widgets.workflow import WorkflowWidget  # noqa: E402

pytestmark = pytest.mark.gui
CONTROLS = (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QLabel,
    QProgressBar,
    QAbstractScrollArea,
)


def _open(make_napari_viewer, size):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(launch.PLUGIN, launch.SAMPLE)
    for name in launch.WIDGETS:
        viewer.window.add_plugin_dock_widget(launch.PLUGIN, name)
    launch.fit_to_screen(viewer, size)
    return viewer


def _settle():
    for _ in range(3):
        QApplication.processEvents()


def _docks(viewer):
    win = viewer.window._qt_window
    docks = [d for d in win.findChildren(QDockWidget) if "spatimeinr" in d.windowTitle().lower()]
    assert docks
    return docks


def _holder(w):
    """The QScrollArea the control scrolls in (None: none), skipping the inside of tables/plots."""
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QScrollArea):
            return p
        if isinstance(p, QAbstractScrollArea):
            return "inner"
        p = p.parentWidget()
    return None


def clipped(dock):
    """Visible controls of ``dock`` whose right edge lies beyond their scroll area's viewport."""
    out = []
    for w in dock.findChildren(CONTROLS):
        if not w.isVisible() or isinstance(w, QScrollBar | QScrollArea):
            continue
        area = _holder(w)
        if area == "inner":
            continue
        box = area.viewport() if area is not None else dock
        right = w.mapTo(box, QPoint(w.width(), 0)).x()
        if right > box.width() + 1:
            out.append(f"{type(w).__name__} {w.objectName() or w.toolTip()[:40]!r}: {right}")
    return out


def check_fits(viewer):
    """Walk every tab (Advanced form open, both engines) of the plugin's docks."""
    problems = []
    for dock in _docks(viewer):
        assert dock.isVisible() and dock.height() >= 250, dock.height()
        assert dock.widget().width() <= dock.width()
        for tabs in dock.findChildren(QTabWidget):
            for i in range(tabs.count()):
                tabs.setCurrentIndex(i)
                _settle()
                problems += clipped(dock)
        wf = dock.widget().findChild(WorkflowWidget) or dock.widget()
        if isinstance(wf, WorkflowWidget):
            wf.tabs.setCurrentIndex(wf.TAB_TRAIN)
            wf.train.advanced_box.expand(animate=False)
            for preset in ("paper", "fast"):
                wf.train.preset_combo.setCurrentText(preset)
                _settle()
                problems += clipped(dock)
    return problems


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_dock_fits_the_window(make_napari_viewer, size):
    viewer = _open(make_napari_viewer, size)
    _settle()
    assert viewer.window._qt_window.width() == size[0]
    assert check_fits(viewer) == []
    wf = _docks(viewer)[0].widget().findChild(WorkflowWidget) or _docks(viewer)[0].widget()
    # the chosen engine's fields only: the INR's are hidden under the fast preset
    assert wf.train.preset_combo.currentText() == "fast"
    assert wf.train.advanced.inputs["latent_dim"].isHidden()
    assert not wf.train.advanced.inputs["refine_width"].isHidden()
    assert "CPU" in wf.train.engine_info.text()
    assert not wf.getting_started.isVisible()  # the sample is open


def test_render_step_opens_after_training(make_napari_viewer, qtbot, tmp_path):
    viewer = _open(make_napari_viewer, (1280, 800))
    dock = _docks(viewer)[0]
    wf = dock.widget().findChild(WorkflowWidget) or dock.widget()
    assert wf.tabs.currentWidget() is wf.train
    wf.train.method_combo.setCurrentText("linear")
    out = tmp_path / "a_rather_long_folder_name_for_the_model_of_this_stack.spatimeinr"
    wf.train.out_edit.setText(str(out))
    wf.train._out_auto = False
    assert wf.train.validate(), wf.train.error_label.text()
    with qtbot.waitSignal(wf.train.model_ready, timeout=30000):
        wf.train.start()
    _settle()
    assert wf.tabs.currentWidget() is wf.render
    assert wf.render.model_combo.currentData() == str(out.resolve())
    for w in (wf.render.add_btn, wf.render.scale_t, wf.render.model_combo):
        assert w.isVisible() and not w.visibleRegion().isEmpty(), w
    assert wf.render.add_btn.isEnabled()
    assert clipped(dock) == []  # the long path in the status wraps
    wf.tabs.setCurrentIndex(wf.TAB_TRAIN)
    _settle()
    assert clipped(dock) == []


def test_getting_started_on_an_empty_viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    wf = WorkflowWidget(viewer)
    qtbot.addWidget(wf)
    wf.show()
    assert wf.getting_started.isVisible() and "File → Open" in wf.start_label.text()
    wf.sample_btn.click()
    assert len(viewer.layers) == 1 and not wf.getting_started.isVisible()
    assert wf.train.layer_combo.currentText() == viewer.layers[0].name
