"""Calibration panel (pytest-qt, offscreen): runs in a worker thread, shows progress and the
summary, saves and applies the calibration, cancels cleanly."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
from gui import qt_binding_problem  # noqa: E402

if qt_binding_problem():
    pytest.skip(qt_binding_problem(), allow_module_level=True)

from calibration import list_calibrations  # noqa: E402
from rig.rig import build_rig  # noqa: E402
from tests.conftest import fast_sim_config  # noqa: E402

SENSOR = 256


@pytest.fixture
def rig():
    cfg = fast_sim_config(size=SENSOR)
    with build_rig(cfg) as r:
        r.samples.load_virtual_sample(2)
        yield cfg, r


def test_panel_runs_a_calibration_in_the_background(qtbot, tmp_path, rig):
    from gui.calibration_panel import CalibrationPanel

    cfg, r = rig
    panel = CalibrationPanel(cfg, rig=r, out_dir=tmp_path)
    qtbot.addWidget(panel)
    panel.show()
    panel.frames.setValue(4)
    panel.step.setCurrentIndex(panel.step.findData("leds"))
    with qtbot.waitSignal(panel.calibration_saved, timeout=60_000) as saved:
        panel.run_button.click()
        assert panel.running and not panel.run_button.isEnabled()
    cal, path = saved.args
    assert path.exists() and [c for _, c, _ in list_calibrations(tmp_path)] == [
        cal.calibration_id]
    assert cal.updated == ("dark", "leds")  # the LED balance needed a dark frame first
    assert r.calibration_id == cal.calibration_id and r.light.levels() == cal.leds.levels
    assert "state mean spread" in panel.summary.toPlainText()
    assert panel.bar.value() == panel.bar.maximum() and panel.run_button.isEnabled()
    assert panel.join(5)


def test_panel_cancel_saves_nothing(qtbot, tmp_path, rig):
    from gui.calibration_panel import CalibrationPanel

    cfg, r = rig
    panel = CalibrationPanel(cfg, rig=r, out_dir=tmp_path)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.failed, timeout=60_000) as failed:
        panel.start("all")
        panel.cancel()
    assert "cancelled" in failed.args[0]
    assert "failed" in panel.status.text() and list_calibrations(tmp_path) == []
    assert panel.join(5) and r.light.levels() == (255,) * 12
