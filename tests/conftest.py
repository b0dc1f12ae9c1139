"""Shared fixtures: a fast simulated station (small sensor, accelerated device time)."""

from __future__ import annotations

import atexit
import faulthandler
import os
import shutil
import sys
import tempfile
import threading
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One engine cache per test session (inference/engines.py), inherited by subprocesses: tests
# never read or write the user's cache.
os.environ["DARKFIELD_CACHE_DIR"] = tempfile.mkdtemp(prefix="darkfield-engine-cache-")
atexit.register(shutil.rmtree, os.environ["DARKFIELD_CACHE_DIR"], ignore_errors=True)
# ... and one remembered window layout per test session, never the operator's (gui/app.py)
os.environ["DARKFIELD_GUI_SETTINGS"] = os.path.join(os.environ["DARKFIELD_CACHE_DIR"], "gui.ini")

from rig.config import StationConfig, load_config  # noqa: E402

THREAD_GRACE_S = 10.0  # a thread a test started may take this long to end after its teardown
WATCHDOG_MARGIN_S = 60.0  # past pytest-timeout's own limit: the GIL-free last resort


def threads_left(before: set[threading.Thread], grace_s: float = THREAD_GRACE_S) -> list[str]:
    """Names of threads not in `before` still alive after waiting up to `grace_s` for them."""
    deadline = time.monotonic() + grace_s
    while True:
        left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def no_leaked_threads(request):
    """Every rig, emulator, worker and pool a test starts is stopped by the end of the test."""
    before = set(threading.enumerate())
    yield
    left = threads_left(before)
    assert not left, f"threads left running by {request.node.name}: {left}"


@pytest.fixture(autouse=True)
def hang_watchdog(request):
    """End the run with every thread's stack if a test hangs where pytest-timeout cannot act.

    pytest-timeout's thread method needs the GIL to print stacks; a thread blocked in C while
    holding it (a Qt self-deadlock) would stall it too. faulthandler's watchdog is a C thread.
    """
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else \
        float(request.config.getoption("timeout") or 300)
    faulthandler.dump_traceback_later(limit + WATCHDOG_MARGIN_S, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def own_window(qtbot):
    """Register a top-level widget: closed and deleted by Qt at teardown, then the cyclic GC is
    checked for Qt objects that only it would delete (gui/lifetime.py explains the hazard)."""
    import shiboken6
    from PySide6 import QtCore

    from gui.lifetime import qt_objects_in_cyclic_garbage

    owned: list = []

    def own(widget):
        owned.append(widget)
        return widget

    yield own
    for widget in owned:
        if shiboken6.isValid(widget):
            widget.close()
            widget.deleteLater()
    owned.clear()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    qtbot.wait(10)
    assert qt_objects_in_cyclic_garbage() == []


def fast_sim_config(size: int = 512, realtime: bool = False, **sections: dict) -> StationConfig:
    """The bundled sim profile with a small sensor and emulated time running fast."""
    cfg = load_config()
    updates = {
        "camera": cfg.camera.model_copy(update={"width": size, "height": size}),
        "sim": cfg.sim.model_copy(update={"realtime": realtime}),
    }
    for name, values in sections.items():  # e.g. camera={"width": 3504}: applied last
        updates[name] = updates.get(name, getattr(cfg, name)).model_copy(update=values)
    return cfg.model_copy(update=updates)


@pytest.fixture
def sim_config() -> StationConfig:
    return fast_sim_config()
