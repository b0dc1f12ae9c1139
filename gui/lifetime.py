"""Qt object lifetimes: why nothing Qt-owned may be left to Python's cyclic garbage collector.

A Qt object whose Python wrapper sits in a reference cycle is destroyed when the cyclic GC runs,
and the GC runs whenever an allocation crosses its threshold, wherever that is: possibly inside
a Qt call that holds Qt's signal-connection mutex (`QObject::disconnect`, reached from pyqtgraph's
`ViewBox.addItem`). The destructor then takes the same mutex and the GUI thread deadlocks on
itself. Two rules keep the window out of that state:

1. Every window, dialog, menu and graphics item has a Qt parent, or is closed and deleted by Qt
   (`WA_DeleteOnClose`, `deleteLater`); no pyqtgraph `PlotItem` (its context menus have no
   parent). `qt_objects_in_cyclic_garbage` finds violations; tests run it around the window.
2. In the application, the cyclic GC runs only from the event loop (`collect_garbage_in_event_loop`),
   never in the middle of a Qt call, so a violation in a third-party widget cannot hang it.
"""

from __future__ import annotations

import gc

import shiboken6
from PySide6 import QtCore, QtWidgets

GC_INTERVAL_MS = 500


def collect_garbage_in_event_loop(app: QtCore.QCoreApplication,
                                  interval_ms: int = GC_INTERVAL_MS) -> QtCore.QTimer:
    """Switch off automatic cyclic GC and run it from a timer of the GUI thread's event loop.

    Each generation is collected when its count passes the same threshold the automatic GC
    uses, so memory behaves as before; only the moment changes. Returns the timer (a child of
    `app`); stopping it and calling `gc.enable()` restores the default.
    """
    thresholds = gc.get_threshold()
    gc.disable()

    def collect() -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    timer = QtCore.QTimer(app)
    timer.setInterval(interval_ms)
    timer.timeout.connect(collect)
    timer.start()
    return timer


def qt_objects_in_cyclic_garbage() -> list[str]:
    """Qt objects (QObjects and graphics items) whose C++ side only the cyclic GC would delete.

    Runs one full collection with `gc.DEBUG_SAVEALL`, so what it would free stays inspectable.
    Listed: live objects owned by Python (their destructor would run inside the GC). Not listed:
    objects a live Qt parent owns, deleted ones, and value types (pens, rects). Empty means safe.
    """
    previous = gc.get_debug()
    gc.set_debug(previous | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                 if isinstance(o, QtCore.QObject | QtWidgets.QGraphicsItem)
                 and shiboken6.isValid(o) and shiboken6.ownedByPython(o)]
    finally:
        gc.set_debug(previous)
        gc.garbage.clear()
        gc.collect()  # now free what was kept for inspection
    return sorted(found)
