"""Qt object lifetimes (gui/lifetime.py): nothing Qt-owned is left to Python's cyclic GC.

The hazard: a Qt object destroyed by the cyclic GC while Qt holds its connection mutex
deadlocks the GUI thread on itself. These tests open and close the window many times with
collections at varied moments, check that no Qt object is left for the GC to delete, and check
that the checks themselves can fail.
"""

from __future__ import annotations

import gc
import os
import random
import threading

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")
from gui import qt_binding_problem  # noqa: E402

if qt_binding_problem():
    pytest.skip(qt_binding_problem(), allow_module_level=True)

import numpy as np  # noqa: E402
import shiboken6  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from gui import imaging  # noqa: E402
from gui.lifetime import collect_garbage_in_event_loop, qt_objects_in_cyclic_garbage  # noqa: E402
from tests.conftest import threads_left  # noqa: E402
from tests.test_gui import _write_recording, small_config  # noqa: E402

OPEN_CLOSE_CYCLES = 12


def _flush_deletes(qtbot) -> None:
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    qtbot.wait(5)


def test_window_opened_and_closed_many_times_with_collections_anywhere(qtbot, tmp_path):
    from gui.app import MainWindow

    recording = tmp_path / "replay.h5"
    _write_recording(recording, 10)
    cfg = small_config(tmp_path)
    stack = np.full((6, 64, 64), 64, np.uint16)
    stack[2, 30:32, :] = 1064
    rng = random.Random(7)
    for cycle in range(OPEN_CLOSE_CYCLES):
        moments = set(rng.sample(range(6), 3))  # collect at three of six moments, varied
        win = MainWindow(cfg)
        if 0 in moments:
            gc.collect()
        win.show()
        qtbot.waitExposed(win)
        if cycle % 3 == 0:  # replay with tiles, map, table and signature updates
            win.open_recording(recording)
            qtbot.waitUntil(lambda w=win: w.sample.path == recording
                            and w.stack.current is not None, timeout=10_000)
        if 1 in moments:
            gc.collect()
        for _ in range(3):
            win.signature.show_signature(imaging.signature_at(stack, 31, 40), "test")
        win.stack.fit()
        if 2 in moments:
            gc.collect()
        win.close()
        if 3 in moments:
            gc.collect()
        _flush_deletes(qtbot)
        assert not shiboken6.isValid(win), "closing the window deletes it on the Qt side"
        if 4 in moments:
            gc.collect()
        del win
        if 5 in moments:
            gc.collect()
        assert qt_objects_in_cyclic_garbage() == [], f"cycle {cycle}"


def test_the_garbage_check_finds_a_parentless_pyqtgraph_menu(qtbot):
    """The check can fail: a PlotWidget's PlotItem owns context menus without a Qt parent."""
    import pyqtgraph as pg

    holder = QtWidgets.QWidget()
    plot = pg.PlotWidget(holder)
    holder.cycle = holder  # a Python reference cycle through the wrapper
    holder.plot = plot
    holder.deleteLater()
    _flush_deletes(qtbot)
    del holder, plot
    found = qt_objects_in_cyclic_garbage()  # frees them afterwards, at this safe point
    assert any(name.endswith("QMenu") for name in found), found
    assert qt_objects_in_cyclic_garbage() == []


def test_event_loop_garbage_collection_restores_automatic_gc(qtbot):
    app = QtWidgets.QApplication.instance()
    assert gc.isenabled()
    timer = collect_garbage_in_event_loop(app, interval_ms=10)
    try:
        assert not gc.isenabled()  # no collection can start inside a Qt call
        junk = []
        for _ in range(3 * gc.get_threshold()[0]):
            a: list = []
            a.append(a)  # cyclic garbage: only the cyclic GC frees it
            junk.append(a)
        del junk, a
        qtbot.waitUntil(lambda: gc.get_count()[0] < gc.get_threshold()[0], timeout=5000)
    finally:
        timer.stop()
        timer.deleteLater()
        gc.enable()


def test_thread_leak_check_reports_a_running_thread():
    before = set(threading.enumerate())
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="left-running")
    t.start()
    try:
        assert threads_left(before, grace_s=0.1) == ["left-running"]
    finally:
        stop.set()
        t.join()
    assert threads_left(before, grace_s=1.0) == []
